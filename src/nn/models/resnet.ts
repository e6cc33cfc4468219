// ResNet-18 for 32×32 images with the names of kuangliu's pytorch-cifar (models/resnet.py),
// the CIFAR ResNet most backdoor papers train: a 3×3 stem (conv1, bn1) without max-pool,
// layer1..layer4 of BasicBlock {conv1, bn1, conv2, bn2, shortcut}, and a `linear` head.
// `shortcut` is Sequential(1×1 conv, BN) where the shape changes and an empty Sequential
// otherwise (no state), as there. Not torchvision's ImageNet ResNet (7×7 stem, max-pool,
// `downsample`, `fc`), which BackdoorBench's `resnet18` uses.
import * as F from '../../engine/functional.js';
import { tidy } from '../../engine/scope.js';
import type { Tensor } from '../../engine/tensor.js';
import { BatchNorm2d, Conv2d, Linear, Sequential } from '../layers.js';
import { Module } from '../module.js';
import { type Classifier, type ConvBatchNormPair, sequentialPairs } from './classifier.js';

export class BasicBlock extends Module {
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm2d;
  readonly conv2: Conv2d;
  readonly bn2: BatchNorm2d;
  readonly shortcut: Sequential;

  constructor(inPlanes: number, planes: number, stride: number) {
    super();
    this.conv1 = this.registerModule('conv1', new Conv2d(inPlanes, planes, 3, { stride, padding: 1, bias: false }));
    this.bn1 = this.registerModule('bn1', new BatchNorm2d(planes));
    this.conv2 = this.registerModule('conv2', new Conv2d(planes, planes, 3, { padding: 1, bias: false }));
    this.bn2 = this.registerModule('bn2', new BatchNorm2d(planes));
    this.shortcut = this.registerModule(
      'shortcut',
      stride !== 1 || inPlanes !== planes
        ? new Sequential(new Conv2d(inPlanes, planes, 1, { stride, bias: false }), new BatchNorm2d(planes))
        : new Sequential(),
    );
  }

  override forward(x: Tensor): Tensor {
    return tidy(() => {
      const out = this.bn1.forward(this.conv1.forward(x)).relu_();
      return this.bn2.forward(this.conv2.forward(out)).add_(this.shortcut.forward(x)).relu_();
    });
  }
}

export interface ResNetOptions {
  numClasses?: number;
  inChannels?: number;
  /** Blocks per stage; [2, 2, 2, 2] (the default) is ResNet-18, [3, 4, 6, 3] ResNet-34. */
  numBlocks?: readonly [number, number, number, number];
}

export class ResNet extends Module implements Classifier {
  readonly numClasses: number;
  readonly featureDim = 512;
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm2d;
  readonly layer1: Sequential;
  readonly layer2: Sequential;
  readonly layer3: Sequential;
  readonly layer4: Sequential;
  readonly linear: Linear;

  constructor(options: ResNetOptions = {}) {
    super();
    this.numClasses = options.numClasses ?? 10;
    const [n1, n2, n3, n4] = options.numBlocks ?? [2, 2, 2, 2];
    let inPlanes = 64;
    const stage = (name: string, planes: number, count: number, stride: number): Sequential => {
      const blocks: BasicBlock[] = [];
      for (let i = 0; i < count; i++) {
        blocks.push(new BasicBlock(inPlanes, planes, i === 0 ? stride : 1));
        inPlanes = planes;
      }
      return this.registerModule(name, new Sequential(...blocks));
    };
    this.conv1 = this.registerModule('conv1', new Conv2d(options.inChannels ?? 3, 64, 3, { padding: 1, bias: false }));
    this.bn1 = this.registerModule('bn1', new BatchNorm2d(64));
    this.layer1 = stage('layer1', 64, n1, 1);
    this.layer2 = stage('layer2', 128, n2, 2);
    this.layer3 = stage('layer3', 256, n3, 2);
    this.layer4 = stage('layer4', 512, n4, 2);
    this.linear = this.registerModule('linear', new Linear(512, this.numClasses));
  }

  features(input: Tensor): Tensor {
    // kuangliu pools with avg_pool2d(out, 4): the same on 32×32 inputs, whose last map is 4×4.
    return tidy(() => F.adaptiveAvgPool2d(this.layers(input).at(-1)!, 1).flatten(1));
  }

  /** layer1 … layer4's outputs. */
  private layers(input: Tensor): Tensor[] {
    const outputs: Tensor[] = [];
    let out = this.bn1.forward(this.conv1.forward(input)).relu_();
    for (const layer of [this.layer1, this.layer2, this.layer3, this.layer4]) {
      out = layer.forward(out);
      outputs.push(out);
    }
    return outputs;
  }

  forwardStages(input: Tensor): { logits: Tensor; stages: Tensor[] } {
    return tidy(() => {
      const stages = this.layers(input);
      return { logits: this.classify(F.adaptiveAvgPool2d(stages.at(-1)!, 1).flatten(1)), stages };
    });
  }

  classify(features: Tensor): Tensor {
    return this.linear.forward(features);
  }

  /** Post-activation: every convolution has its own batch norm (the stem, each block's two, the projections). */
  convBatchNormPairs(): ConvBatchNormPair[] {
    const pairs: ConvBatchNormPair[] = [{ name: 'conv1', conv: this.conv1, bn: this.bn1 }];
    for (const [name, module] of this.namedModules()) {
      if (module instanceof BasicBlock) {
        pairs.push({ name: `${name}.conv1`, conv: module.conv1, bn: module.bn1 });
        pairs.push({ name: `${name}.conv2`, conv: module.conv2, bn: module.bn2 });
      }
    }
    return [...pairs, ...sequentialPairs(this)];
  }

  override forward(input: Tensor): Tensor {
    return tidy(() => this.classify(this.features(input)));
  }
}

/** ResNet-18 with the CIFAR stem. */
export function resNet18(options: Omit<ResNetOptions, 'numBlocks'> = {}): ResNet {
  return new ResNet({ ...options, numBlocks: [2, 2, 2, 2] });
}

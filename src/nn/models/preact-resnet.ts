// PreAct-ResNet18 as BackdoorBench defines it (models/preact_resnet.py, derived from
// kuangliu's pytorch-cifar): conv1, layer1..layer4 of PreActBlock {bn1, conv1, bn2, conv2,
// and `shortcut` = Sequential(1×1 conv) where the shape changes}, avgpool, linear.
// Names, order and shapes match, so BackdoorBench checkpoints load as they are.
// BackdoorBench applies no batch norm or ReLU after layer4: the penultimate features
// are the globally pooled output of the last residual sum (they can be negative).
import { tidy } from '../../engine/scope.js';
import type { Tensor } from '../../engine/tensor.js';
import { AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Linear, Sequential } from '../layers.js';
import { Module } from '../module.js';
import type { Classifier, ConvBatchNormPair } from './classifier.js';

export class PreActBlock extends Module {
  readonly bn1: BatchNorm2d;
  readonly conv1: Conv2d;
  readonly bn2: BatchNorm2d;
  readonly conv2: Conv2d;
  /** Only where stride ≠ 1 or the width changes; otherwise the shortcut is the identity. */
  readonly shortcut: Sequential | null;

  constructor(inPlanes: number, planes: number, stride: number) {
    super();
    this.bn1 = this.registerModule('bn1', new BatchNorm2d(inPlanes));
    this.conv1 = this.registerModule('conv1', new Conv2d(inPlanes, planes, 3, { stride, padding: 1, bias: false }));
    this.bn2 = this.registerModule('bn2', new BatchNorm2d(planes));
    this.conv2 = this.registerModule('conv2', new Conv2d(planes, planes, 3, { padding: 1, bias: false }));
    this.shortcut = this.registerModule(
      'shortcut',
      stride !== 1 || inPlanes !== planes
        ? new Sequential(new Conv2d(inPlanes, planes, 1, { stride, bias: false }))
        : null,
    );
  }

  override forward(x: Tensor): Tensor {
    return tidy(() => {
      const activated = this.bn1.forward(x).relu_();
      // The projection shortcut sees the pre-activated input; the identity sees x.
      const shortcut = this.shortcut === null ? x : this.shortcut.forward(activated);
      const out = this.bn2.forward(this.conv1.forward(activated)).relu_();
      return this.conv2.forward(out).add_(shortcut);
    });
  }
}

export interface PreActResNetOptions {
  numClasses?: number;
  inChannels?: number;
  /** Blocks per stage; [2, 2, 2, 2] (the default) is PreAct-ResNet18. */
  numBlocks?: readonly [number, number, number, number];
}

export class PreActResNet extends Module implements Classifier {
  readonly numClasses: number;
  readonly featureDim = 512;
  readonly conv1: Conv2d;
  readonly layer1: Sequential;
  readonly layer2: Sequential;
  readonly layer3: Sequential;
  readonly layer4: Sequential;
  readonly avgpool: AdaptiveAvgPool2d;
  readonly linear: Linear;

  constructor(options: PreActResNetOptions = {}) {
    super();
    this.numClasses = options.numClasses ?? 10;
    const [n1, n2, n3, n4] = options.numBlocks ?? [2, 2, 2, 2];
    let inPlanes = 64;
    const stage = (name: string, planes: number, count: number, stride: number): Sequential => {
      const blocks: PreActBlock[] = [];
      for (let i = 0; i < count; i++) {
        blocks.push(new PreActBlock(inPlanes, planes, i === 0 ? stride : 1));
        inPlanes = planes;
      }
      return this.registerModule(name, new Sequential(...blocks));
    };
    this.conv1 = this.registerModule('conv1', new Conv2d(options.inChannels ?? 3, 64, 3, { padding: 1, bias: false }));
    this.layer1 = stage('layer1', 64, n1, 1);
    this.layer2 = stage('layer2', 128, n2, 2);
    this.layer3 = stage('layer3', 256, n3, 2);
    this.layer4 = stage('layer4', 512, n4, 2);
    // BackdoorBench's current version pools adaptively (older ones: AvgPool2d(4)); same on 32×32.
    this.avgpool = this.registerModule('avgpool', new AdaptiveAvgPool2d(1));
    this.linear = this.registerModule('linear', new Linear(512, this.numClasses));
  }

  features(input: Tensor): Tensor {
    return tidy(() => this.avgpool.forward(this.layers(input).at(-1)!).flatten(1));
  }

  /** layer1 … layer4's outputs. */
  private layers(input: Tensor): Tensor[] {
    const outputs: Tensor[] = [];
    let out = this.conv1.forward(input);
    for (const layer of [this.layer1, this.layer2, this.layer3, this.layer4]) {
      out = layer.forward(out);
      outputs.push(out);
    }
    return outputs;
  }

  forwardStages(input: Tensor): { logits: Tensor; stages: Tensor[] } {
    return tidy(() => {
      const stages = this.layers(input);
      return { logits: this.classify(this.avgpool.forward(stages.at(-1)!).flatten(1)), stages };
    });
  }

  classify(features: Tensor): Tensor {
    return this.linear.forward(features);
  }

  /** Pre-activation blocks: only conv1 → bn2 inside a block (as in WideResNet). */
  convBatchNormPairs(): ConvBatchNormPair[] {
    return [...this.namedModules()]
      .filter((entry): entry is [string, PreActBlock] => entry[1] instanceof PreActBlock)
      .map(([name, block]) => ({ name: `${name}.conv1`, conv: block.conv1, bn: block.bn2 }));
  }

  override forward(input: Tensor): Tensor {
    return tidy(() => this.classify(this.features(input)));
  }
}

/** PreAct-ResNet18, BackdoorBench's default architecture. */
export function preActResNet18(options: Omit<PreActResNetOptions, 'numBlocks'> = {}): PreActResNet {
  return new PreActResNet({ ...options, numBlocks: [2, 2, 2, 2] });
}

// VGG-16 with batch norm for 32×32 images, named as kuangliu's pytorch-cifar (models/vgg.py)
// and BackdoorBench's models/vgg.py name it: `features` is one Sequential of
// [Conv2d(3×3, pad 1, bias), BatchNorm2d, ReLU] per configuration entry and MaxPool2d(2, 2)
// per 'M', closed by AvgPool2d(1, 1), so the state-dict keys carry PyTorch's Sequential
// indices (features.0.weight, features.1.running_mean, …, features.41.*); then
// `classifier` = Linear(512, numClasses). This is not torchvision's vgg16_bn (three
// Linear layers for 224×224 inputs): the CIFAR variant is what backdoor papers train on
// 32×32 images. The TypeScript property is `layers`, since `features` is the method.
import * as F from '../../engine/functional.js';
import { tidy } from '../../engine/scope.js';
import type { Tensor } from '../../engine/tensor.js';
import { AvgPool2d, BatchNorm2d, Conv2d, Linear, MaxPool2d, ReLU, Sequential } from '../layers.js';
import { Module } from '../module.js';
import { type Classifier, type ConvBatchNormPair, sequentialPairs } from './classifier.js';

type Config = readonly (number | 'M')[];

export const vggConfigs = {
  vgg11: [64, 'M', 128, 'M', 256, 256, 'M', 512, 512, 'M', 512, 512, 'M'],
  vgg13: [64, 64, 'M', 128, 128, 'M', 256, 256, 'M', 512, 512, 'M', 512, 512, 'M'],
  vgg16: [64, 64, 'M', 128, 128, 'M', 256, 256, 256, 'M', 512, 512, 512, 'M', 512, 512, 512, 'M'],
  vgg19: [64, 64, 'M', 128, 128, 'M', 256, 256, 256, 256, 'M', 512, 512, 512, 512, 'M', 512, 512, 512, 512, 'M'],
} as const satisfies Record<string, Config>;

export interface VGGOptions {
  numClasses?: number;
  inChannels?: number;
  /** Layer configuration; VGG-16 by default. */
  config?: Config;
}

export class VGG extends Module implements Classifier {
  readonly numClasses: number;
  readonly featureDim: number;
  /** Registered as `features`. */
  readonly layers: Sequential;
  readonly classifier: Linear;

  constructor(options: VGGOptions = {}) {
    super();
    this.numClasses = options.numClasses ?? 10;
    const modules: Module[] = [];
    let channels = options.inChannels ?? 3;
    for (const entry of options.config ?? vggConfigs.vgg16) {
      if (entry === 'M') {
        modules.push(new MaxPool2d(2, { stride: 2 }));
      } else {
        modules.push(new Conv2d(channels, entry, 3, { padding: 1 }), new BatchNorm2d(entry), new ReLU());
        channels = entry;
      }
    }
    modules.push(new AvgPool2d(1, { stride: 1 }));
    this.featureDim = channels;
    this.layers = this.registerModule('features', new Sequential(...modules));
    this.classifier = this.registerModule('classifier', new Linear(channels, this.numClasses));
  }

  /**
   * The flattened output of `features`. On 32×32 inputs the maps are 1×1 there and this
   * is PyTorch's `view(N, -1)`; larger inputs are averaged globally instead.
   */
  features(input: Tensor): Tensor {
    return tidy(() => {
      const out = this.layers.forward(input);
      const pooled = out.shape[2] === 1 && out.shape[3] === 1 ? out : F.adaptiveAvgPool2d(out, 1);
      return pooled.flatten(1);
    });
  }

  classify(features: Tensor): Tensor {
    return this.classifier.forward(features);
  }

  /** Each convolution of `features` and the batch norm after it. */
  convBatchNormPairs(): ConvBatchNormPair[] {
    return sequentialPairs(this);
  }

  override forward(input: Tensor): Tensor {
    return tidy(() => this.classify(this.features(input)));
  }
}

/** VGG-16 with batch norm, for 32×32 images. */
export function vgg16BN(options: Omit<VGGOptions, 'config'> = {}): VGG {
  return new VGG({ ...options, config: vggConfigs.vgg16 });
}

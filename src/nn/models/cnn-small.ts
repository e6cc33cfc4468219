// A small CNN for 28×28 images (MNIST, Fashion-MNIST). The layout follows PyTorch's MNIST
// example (pytorch/examples mnist/main.py: conv1, conv2, dropout1, dropout2, fc1 → 128,
// fc2), narrowed so that it trains in seconds per epoch on a laptop CPU: 16 and 32
// channels, batch norm after each convolution (bn1, bn2), and a 2×2 max-pool after each,
// so fc1 sees 32×7×7 = 1568 inputs instead of 9216. The example's network costs about
// 4× more per step (≈ 175–215 ms against ≈ 50 ms for a batch of 64 on 2 cores).
// forward returns logits (the example ends in log_softmax; cross-entropy takes logits).
import * as F from '../../engine/functional.js';
import { tidy } from '../../engine/scope.js';
import type { Tensor } from '../../engine/tensor.js';
import { BatchNorm2d, Conv2d, Dropout, Linear } from '../layers.js';
import { Module } from '../module.js';
import type { Classifier, ConvBatchNormPair } from './classifier.js';

export interface SmallCNNOptions {
  numClasses?: number;
  /** 1 for grey images (the default). */
  inChannels?: number;
}

export class SmallCNN extends Module implements Classifier {
  readonly numClasses: number;
  readonly featureDim = 128;
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm2d;
  readonly conv2: Conv2d;
  readonly bn2: BatchNorm2d;
  readonly dropout1: Dropout;
  readonly dropout2: Dropout;
  readonly fc1: Linear;
  readonly fc2: Linear;

  constructor(options: SmallCNNOptions = {}) {
    super();
    this.numClasses = options.numClasses ?? 10;
    this.conv1 = this.registerModule('conv1', new Conv2d(options.inChannels ?? 1, 16, 3, { padding: 1, bias: false }));
    this.bn1 = this.registerModule('bn1', new BatchNorm2d(16));
    this.conv2 = this.registerModule('conv2', new Conv2d(16, 32, 3, { padding: 1, bias: false }));
    this.bn2 = this.registerModule('bn2', new BatchNorm2d(32));
    this.dropout1 = this.registerModule('dropout1', new Dropout(0.25));
    this.dropout2 = this.registerModule('dropout2', new Dropout(0.5));
    this.fc1 = this.registerModule('fc1', new Linear(32 * 7 * 7, 128));
    this.fc2 = this.registerModule('fc2', new Linear(128, this.numClasses));
  }

  /** relu(fc1(...)), N×128 (dropout2 belongs to the head, as in the example). */
  features(input: Tensor): Tensor {
    if (input.ndim !== 4 || input.shape[2] !== 28 || input.shape[3] !== 28) {
      throw new Error(`SmallCNN: expected N×C×28×28 images, got [${input.shape.join(', ')}]`);
    }
    return tidy(() => {
      let out = F.maxPool2d(this.bn1.forward(this.conv1.forward(input)).relu_(), 2);
      out = F.maxPool2d(this.bn2.forward(this.conv2.forward(out)).relu_(), 2);
      out = this.dropout1.forward(out);
      return this.fc1.forward(out.flatten(1)).relu_();
    });
  }

  classify(features: Tensor): Tensor {
    return tidy(() => this.fc2.forward(this.dropout2.forward(features)));
  }

  convBatchNormPairs(): ConvBatchNormPair[] {
    return [
      { name: 'conv1', conv: this.conv1, bn: this.bn1 },
      { name: 'conv2', conv: this.conv2, bn: this.bn2 },
    ];
  }

  override forward(input: Tensor): Tensor {
    return tidy(() => this.classify(this.features(input)));
  }
}

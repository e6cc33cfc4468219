// Wide ResNet WRN-d-k with pre-activation basic blocks, exactly as the MCLDef/NAD
// authors' code builds it (parameter names included), so their checkpoints load as is.
import * as F from '../../engine/functional.js';
import { tidy } from '../../engine/scope.js';
import type { Tensor } from '../../engine/tensor.js';
import { normal_, zeros_ } from '../init.js';
import { BatchNorm2d, Conv2d, Linear, Sequential } from '../layers.js';
import { Module } from '../module.js';
import type { Classifier, ConvBatchNormPair } from './classifier.js';

class BasicBlock extends Module {
  readonly bn1: BatchNorm2d;
  readonly conv1: Conv2d;
  readonly bn2: BatchNorm2d;
  readonly conv2: Conv2d;
  readonly convShortcut: Conv2d | null;

  constructor(
    inPlanes: number,
    outPlanes: number,
    stride: number,
    readonly dropRate: number,
  ) {
    super();
    this.bn1 = this.registerModule('bn1', new BatchNorm2d(inPlanes));
    this.conv1 = this.registerModule('conv1', new Conv2d(inPlanes, outPlanes, 3, { stride, padding: 1, bias: false }));
    this.bn2 = this.registerModule('bn2', new BatchNorm2d(outPlanes));
    this.conv2 = this.registerModule('conv2', new Conv2d(outPlanes, outPlanes, 3, { padding: 1, bias: false }));
    this.convShortcut = this.registerModule(
      'convShortcut',
      inPlanes === outPlanes ? null : new Conv2d(inPlanes, outPlanes, 1, { stride, bias: false }),
    );
  }

  override forward(x: Tensor): Tensor {
    return tidy(() => {
      const activated = this.bn1.forward(x).relu_();
      // With a projection shortcut, the shortcut also sees the pre-activated input.
      const shortcut = this.convShortcut === null ? x : this.convShortcut.forward(activated);
      let out = this.bn2.forward(this.conv1.forward(activated)).relu_();
      if (this.dropRate > 0) out = F.dropout(out, this.dropRate, this.training);
      return this.conv2.forward(out).add_(shortcut);
    });
  }
}

export interface WideResNetOptions {
  depth: number;
  widenFactor: number;
  numClasses?: number;
  dropRate?: number;
  inChannels?: number;
}

export class WideResNet extends Module implements Classifier {
  readonly numClasses: number;
  readonly featureDim: number;
  readonly conv1: Conv2d;
  readonly block1: Module;
  readonly block2: Module;
  readonly block3: Module;
  readonly bn1: BatchNorm2d;
  readonly fc: Linear;

  constructor(options: WideResNetOptions) {
    super();
    const { depth, widenFactor: k } = options;
    if ((depth - 4) % 6 !== 0 || depth < 10)
      throw new Error(`WideResNet: depth must be 6n + 4 (10, 16, 22, 28, 40...), got ${depth}`);
    const n = (depth - 4) / 6;
    const dropRate = options.dropRate ?? 0;
    const channels = [16, 16 * k, 32 * k, 64 * k] as const;
    this.numClasses = options.numClasses ?? 10;
    this.featureDim = channels[3];
    const stage = (name: string, inPlanes: number, outPlanes: number, stride: number): Module => {
      const holder = new NetworkBlock(n, inPlanes, outPlanes, stride, dropRate);
      return this.registerModule(name, holder);
    };
    this.conv1 = this.registerModule(
      'conv1',
      new Conv2d(options.inChannels ?? 3, channels[0], 3, { padding: 1, bias: false }),
    );
    this.block1 = stage('block1', channels[0], channels[1], 1);
    this.block2 = stage('block2', channels[1], channels[2], 2);
    this.block3 = stage('block3', channels[2], channels[3], 2);
    this.bn1 = this.registerModule('bn1', new BatchNorm2d(channels[3]));
    this.fc = this.registerModule('fc', new Linear(channels[3], this.numClasses));
    // The authors' initialization: conv N(0, √(2/(k·k·out))), BN (1, 0), linear bias 0.
    for (const [, module] of this.namedModules()) {
      if (module instanceof Conv2d) {
        const [out, , kh, kw] = module.weight.shape as [number, number, number, number];
        normal_(module.weight, 0, Math.sqrt(2 / (kh * kw * out)));
      } else if (module instanceof Linear && module.bias !== null) {
        zeros_(module.bias);
      }
    }
  }

  features(input: Tensor): Tensor {
    return tidy(() => this.pooled(this.blocks(input).at(-1)!));
  }

  /** The three block groups' outputs (before the final batch norm), as NAD's WRN returns them. */
  private blocks(input: Tensor): Tensor[] {
    const first = this.block1.forward(this.conv1.forward(input));
    const second = this.block2.forward(first);
    return [first, second, this.block3.forward(second)];
  }

  private pooled(last: Tensor): Tensor {
    return F.adaptiveAvgPool2d(this.bn1.forward(last).relu_(), 1).flatten(1);
  }

  forwardStages(input: Tensor): { logits: Tensor; stages: Tensor[] } {
    return tidy(() => {
      const stages = this.blocks(input);
      return { logits: this.classify(this.pooled(stages.at(-1)!)), stages };
    });
  }

  classify(features: Tensor): Tensor {
    return this.fc.forward(features);
  }

  /**
   * Pre-activation blocks: inside each block conv1 feeds bn2 alone. Every other convolution's
   * output joins a residual sum before any batch norm, so no batch norm speaks for it alone.
   */
  convBatchNormPairs(): ConvBatchNormPair[] {
    return [...this.namedModules()]
      .filter((entry): entry is [string, BasicBlock] => entry[1] instanceof BasicBlock)
      .map(([name, block]) => ({ name: `${name}.conv1`, conv: block.conv1, bn: block.bn2 }));
  }

  override forward(input: Tensor): Tensor {
    return tidy(() => this.classify(this.features(input)));
  }
}

/** `block{1,2,3}.layer.{i}`: the authors' wrapper around a Sequential of blocks. */
class NetworkBlock extends Module {
  readonly layer: Sequential;

  constructor(count: number, inPlanes: number, outPlanes: number, stride: number, dropRate: number) {
    super();
    const blocks = Array.from(
      { length: count },
      (_, i) => new BasicBlock(i === 0 ? inPlanes : outPlanes, outPlanes, i === 0 ? stride : 1, dropRate),
    );
    this.layer = this.registerModule('layer', new Sequential(...blocks));
  }

  override forward(x: Tensor): Tensor {
    return this.layer.forward(x);
  }
}

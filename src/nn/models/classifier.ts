// What every image classifier in mcldef exposes: penultimate features and the head.
import type { Tensor } from '../../engine/tensor.js';
import { BatchNorm2d, Conv2d, Sequential } from '../layers.js';
import type { Module } from '../module.js';

/** A convolution whose output one batch norm normalizes directly, with nothing added between. */
export interface ConvBatchNormPair {
  /** The convolution's name in the state dict, without `.weight`. */
  readonly name: string;
  readonly conv: Conv2d;
  readonly bn: BatchNorm2d;
}

export interface Classifier extends Module {
  readonly numClasses: number;
  /** Penultimate features (after the last activation and global pooling), N×D. */
  features(input: Tensor): Tensor;
  /** Logits from penultimate features, N×numClasses. */
  classify(features: Tensor): Tensor;
  /** classify(features(input)). */
  forward(input: Tensor): Tensor;
  /**
   * Every convolution paired with the batch norm that normalizes its output alone, for methods
   * that read a channel's convolution and batch norm together (CLP). Absent: the architecture
   * does not say, and such methods refuse it.
   */
  convBatchNormPairs?(): ConvBatchNormPair[];
  /**
   * The logits and the feature maps after each stage (N×C×H×W, e.g. WideResNet's three block
   * groups), in one pass, for methods that read intermediate layers (NAD's attention maps).
   * Absent: the architecture does not say, and such methods refuse it.
   */
  forwardStages?(input: Tensor): { logits: Tensor; stages: Tensor[] };
  /** An independent copy with the same weights (models made by createModel have one). */
  copy?(): Classifier;
}

/** Each Conv2d directly followed by a BatchNorm2d of its width inside a Sequential of `model`. */
export function sequentialPairs(model: Module): ConvBatchNormPair[] {
  const pairs: ConvBatchNormPair[] = [];
  for (const [prefix, module] of model.namedModules()) {
    if (!(module instanceof Sequential)) continue;
    const children = [...module.namedChildren()];
    children.forEach(([name, child], i) => {
      const next = children[i + 1]?.[1];
      if (child instanceof Conv2d && next instanceof BatchNorm2d && child.weight.shape[0] === next.weight!.shape[0]) {
        pairs.push({ name: prefix === '' ? name : `${prefix}.${name}`, conv: child, bn: next });
      }
    });
  }
  return pairs;
}

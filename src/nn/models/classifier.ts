// What every image classifier in mcldef exposes: penultimate features and the head.
import type { Tensor } from '../../engine/tensor.js';
import type { Module } from '../module.js';

export interface Classifier extends Module {
  readonly numClasses: number;
  /** Penultimate features (after the last activation and global pooling), N×D. */
  features(input: Tensor): Tensor;
  /** Logits from penultimate features, N×numClasses. */
  classify(features: Tensor): Tensor;
  /** classify(features(input)). */
  forward(input: Tensor): Tensor;
}

// CLP (Channel Lipschitzness-based Pruning, Zheng et al., ECCV 2022): data-free. A backdoor
// channel reacts strongly to a small input change, so its upper bound on the channel's
// Lipschitz constant stands out. For each convolution and the batch norm that normalizes it
// alone, channel k's bound is the largest singular value of its kernel (in × kh·kw) times
// |γ_k / σ_k|; a channel whose bound exceeds the layer's mean + u × std is pruned by zeroing
// its γ and β. BackdoorBench defense/clp.py, config/defense/clp/cifar10.yaml (u 3).
import * as F from '../engine/functional.js';
import { noGrad } from '../engine/autograd.js';
import { tensor } from '../engine/creation.js';
import { tidy } from '../engine/scope.js';
import type { ImageSplit } from '../data/dataset.js';
import type { Classifier, ConvBatchNormPair } from '../nn/models/classifier.js';
import {
  type Defense,
  type DefenseContext,
  type DefenseEntry,
  type DefenseOutcome,
  untargetedOutcome,
} from './defense.js';

export const CLP_DEFAULT_U = 3;

/** Each channel's upper bound on its Lipschitz constant: σ_max(W_k) · |γ_k / √(var_k + ε)|. */
export function channelLipschitz(pair: ConvBatchNormPair): number[] {
  const { conv, bn } = pair;
  if (bn.weight === null || bn.runningVar === null) {
    throw new Error(`CLP: the batch norm after ${pair.name} has no scale or running variance`);
  }
  return noGrad(() =>
    tidy(() => {
      const [out, inChannels] = conv.weight.shape as [number, number, number, number];
      const kernels = conv.weight.reshape([out, inChannels, -1]).float();
      const [, singular] = F.svd(kernels);
      const scale = bn.weight!.div(bn.runningVar!.add(bn.eps).sqrt()).abs();
      return Array.from(singular.amax(1).mul(scale).toFloat64Array());
    }),
  );
}

/** Channels whose bound exceeds mean + u · std (the unbiased std, as torch.std). */
export function lipschitzOutliers(bounds: readonly number[], u: number): number[] {
  const n = bounds.length;
  const mean = bounds.reduce((sum, b) => sum + b, 0) / n;
  const std = n > 1 ? Math.sqrt(bounds.reduce((sum, b) => sum + (b - mean) ** 2, 0) / (n - 1)) : 0;
  return bounds.flatMap((bound, channel) => (bound > mean + u * std ? [channel] : []));
}

export class ChannelLipschitzPruning implements Defense {
  readonly name = 'clp';

  constructor(readonly u: number = CLP_DEFAULT_U) {}

  run(model: Classifier, _clean: ImageSplit, context: DefenseContext): DefenseOutcome {
    const started = performance.now();
    if (model.convBatchNormPairs === undefined) {
      throw new Error(
        'CLP needs to know which batch norm normalizes each convolution; this architecture does not say (convBatchNormPairs)',
      );
    }
    const pairs = model.convBatchNormPairs();
    const layers = pairs.map((pair) => {
      const bounds = channelLipschitz(pair);
      const pruned = lipschitzOutliers(bounds, this.u);
      if (pruned.length > 0) {
        noGrad(() =>
          tidy(() => {
            const keep = new Float32Array(bounds.length).fill(1);
            for (const channel of pruned) keep[channel] = 0;
            const mask = tensor(keep, { device: pair.bn.weight!.device });
            pair.bn.weight!.mul_(mask);
            pair.bn.bias?.mul_(mask);
          }),
        );
      }
      return { layer: pair.name, channels: bounds.length, pruned, largest: Math.max(...bounds) };
    });
    const total = layers.reduce((sum, layer) => sum + layer.pruned.length, 0);
    context.log(
      `CLP (u ${this.u}): pruned ${total} of ${layers.reduce((sum, layer) => sum + layer.channels, 0)} channels in ${layers.length} convolution–batch-norm pairs`,
    );
    const seconds = (performance.now() - started) / 1000;
    return untargetedOutcome(model, {
      seconds: { pruning: seconds },
      ...(total > 0 ? {} : { unchanged: 'no channel stands out' }),
      details: { clp: { u: this.u, pruned: total, layers } },
    });
  }
}

export const clpEntry: DefenseEntry = {
  name: 'clp',
  summary: 'Channel Lipschitzness-based Pruning (CLP): data-free, prunes channels with an outlying Lipschitz bound',
  options: {
    u: {
      type: 'number',
      min: 0,
      default: CLP_DEFAULT_U,
      help: "prune a channel whose bound exceeds its layer's mean + u × std",
    },
  },
  create: (values) => new ChannelLipschitzPruning((values.u as number | undefined) ?? CLP_DEFAULT_U),
};

// Adam and AdamW with PyTorch's update rule (bias-corrected moments, optional AMSGrad).
import { zerosLike } from '../creation.js';
import { keep } from '../scope.js';
import type { Tensor } from '../tensor.js';
import { type ParamGroup, type ParamGroupSpec, Optimizer } from './optimizer.js';

export interface AdamOptions {
  lr: number;
  betas: readonly [number, number];
  eps: number;
  weightDecay: number;
  amsgrad: boolean;
  maximize: boolean;
  /** AdamW: decay the weights directly instead of adding weightDecay·θ to the gradient. */
  decoupledWeightDecay: boolean;
}

interface AdamState {
  step: number;
  expAvg: Tensor;
  expAvgSq: Tensor;
  maxExpAvgSq?: Tensor;
}

export class Adam extends Optimizer<AdamOptions, AdamState> {
  constructor(params: readonly Tensor[] | readonly ParamGroupSpec<AdamOptions>[], options: Partial<AdamOptions> = {}) {
    super(params, {
      lr: 1e-3,
      betas: [0.9, 0.999],
      eps: 1e-8,
      weightDecay: 0,
      amsgrad: false,
      maximize: false,
      decoupledWeightDecay: false,
      ...options,
    });
  }

  protected update(param: Tensor, grad: Tensor, group: ParamGroup<AdamOptions>): void {
    const [beta1, beta2] = group.betas;
    let g = group.maximize ? grad.neg() : grad;
    if (group.weightDecay !== 0) {
      if (group.decoupledWeightDecay) param.mul_(1 - group.lr * group.weightDecay);
      else g = g.add(param, group.weightDecay);
    }
    let state = this.state.get(param);
    if (state === undefined) {
      state = { step: 0, expAvg: keep(zerosLike(param)), expAvgSq: keep(zerosLike(param)) };
      if (group.amsgrad) state.maxExpAvgSq = keep(zerosLike(param));
      this.state.set(param, state);
    }
    state.step += 1;
    state.expAvg.mul_(beta1).add_(g, 1 - beta1);
    state.expAvgSq.mul_(beta2).addcmul_(g, g, 1 - beta2);
    const biasCorrection1 = 1 - beta1 ** state.step;
    const biasCorrection2Sqrt = Math.sqrt(1 - beta2 ** state.step);
    let second = state.expAvgSq;
    if (state.maxExpAvgSq !== undefined) {
      const max = state.maxExpAvgSq.maximum(state.expAvgSq);
      state.maxExpAvgSq.copy_(max);
      second = state.maxExpAvgSq;
    }
    const denom = second.sqrt().div_(biasCorrection2Sqrt).add_(group.eps);
    param.addcdiv_(state.expAvg, denom, -group.lr / biasCorrection1);
  }
}

/** Adam with decoupled weight decay (default 0.01), like torch.optim.AdamW. */
export class AdamW extends Adam {
  constructor(params: readonly Tensor[] | readonly ParamGroupSpec<AdamOptions>[], options: Partial<AdamOptions> = {}) {
    super(params, { weightDecay: 0.01, ...options, decoupledWeightDecay: true });
  }
}

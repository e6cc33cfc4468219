// Stochastic gradient descent with PyTorch's exact update rule.
import { keep } from '../scope.js';
import type { Tensor } from '../tensor.js';
import { type ParamGroup, type ParamGroupSpec, Optimizer } from './optimizer.js';

export interface SGDOptions {
  lr: number;
  momentum: number;
  dampening: number;
  weightDecay: number;
  nesterov: boolean;
  maximize: boolean;
}

interface SGDState {
  momentumBuffer?: Tensor;
}

export class SGD extends Optimizer<SGDOptions, SGDState> {
  constructor(
    params: readonly Tensor[] | readonly ParamGroupSpec<SGDOptions>[],
    options: Partial<SGDOptions> & { lr: number },
  ) {
    super(params, { momentum: 0, dampening: 0, weightDecay: 0, nesterov: false, maximize: false, ...options });
    for (const group of this.paramGroups) {
      if (group.nesterov && (group.momentum <= 0 || group.dampening !== 0)) {
        throw new Error('SGD: Nesterov momentum requires a momentum and zero dampening');
      }
    }
  }

  protected update(param: Tensor, grad: Tensor, group: ParamGroup<SGDOptions>): void {
    let direction = group.maximize ? grad.neg() : grad;
    if (group.weightDecay !== 0) direction = direction.add(param, group.weightDecay);
    if (group.momentum !== 0) {
      let state = this.state.get(param);
      if (state === undefined) this.state.set(param, (state = {}));
      if (state.momentumBuffer === undefined) {
        state.momentumBuffer = keep(direction.clone());
      } else {
        state.momentumBuffer.mul_(group.momentum).add_(direction, 1 - group.dampening);
      }
      direction = group.nesterov ? direction.add(state.momentumBuffer, group.momentum) : state.momentumBuffer;
    }
    param.add_(direction, -group.lr);
  }
}

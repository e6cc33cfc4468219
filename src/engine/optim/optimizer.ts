// Optimizer base: parameter groups with their own hyperparameters, per-parameter state.
import { noGrad } from '../autograd.js';
import { keep, tidy } from '../scope.js';
import type { Tensor } from '../tensor.js';

/** A group of parameters sharing hyperparameters (any option left out takes the default). */
export type ParamGroupSpec<O> = { params: readonly Tensor[] } & Partial<O>;

export type ParamGroup<O> = { params: readonly Tensor[] } & O & { lr: number };

export abstract class Optimizer<O extends { lr: number }, S = Record<string, Tensor | number>> {
  readonly paramGroups: ParamGroup<O>[];
  /** Per-parameter state (momentum buffers, moments...), created lazily by step(). */
  protected readonly state = new Map<Tensor, S>();

  constructor(params: readonly Tensor[] | readonly ParamGroupSpec<O>[], defaults: O) {
    const specs: readonly ParamGroupSpec<O>[] =
      params.length > 0 && !('params' in (params[0] as object))
        ? [{ params: params as readonly Tensor[] } as ParamGroupSpec<O>]
        : (params as readonly ParamGroupSpec<O>[]);
    if (specs.length === 0) throw new Error('optimizer got an empty parameter list');
    this.paramGroups = specs.map((spec) => ({ ...defaults, ...spec }) as ParamGroup<O>);
    const seen = new Set<Tensor>();
    for (const group of this.paramGroups) {
      for (const param of group.params) {
        if (seen.has(param)) throw new Error('a parameter appears in more than one parameter group');
        seen.add(param);
      }
      if (!(group.lr >= 0)) throw new RangeError(`invalid learning rate ${group.lr}`);
    }
  }

  /** Clears every parameter's gradient (set to none, PyTorch's default since 2.0). */
  zeroGrad(): void {
    for (const group of this.paramGroups) for (const param of group.params) param.grad = null;
  }

  /** One update from the gradients now in `.grad`; parameters without one are skipped. */
  step(): void {
    noGrad(() =>
      tidy(() => {
        for (const group of this.paramGroups) {
          for (const param of group.params) {
            const grad = param.grad;
            if (grad === null) continue;
            this.update(param, grad, group);
            grad.dispose();
          }
        }
      }),
    );
  }

  protected abstract update(param: Tensor, grad: Tensor, group: ParamGroup<O>): void;

  /**
   * The per-parameter state as named tensors ("<group>.<param>.<field>", copies the
   * caller disposes) and numbers, for checkpoints that resume training exactly.
   */
  exportState(): { tensors: Map<string, Tensor>; numbers: Record<string, number> } {
    const tensors = new Map<string, Tensor>();
    const numbers: Record<string, number> = {};
    this.paramGroups.forEach((group, g) => {
      numbers[`${g}.lr`] = group.lr;
      group.params.forEach((param, p) => {
        const entry = this.state.get(param);
        if (entry === undefined) return;
        for (const [field, value] of Object.entries(entry as object)) {
          const key = `${g}.${p}.${field}`;
          if (typeof value === 'number') numbers[key] = value;
          else if (value !== undefined && typeof (value as Tensor).clone === 'function')
            tensors.set(key, (value as Tensor).clone());
        }
      });
    });
    return { tensors, numbers };
  }

  /** Restores what exportState() produced (tensors are copied; the caller keeps ownership). */
  importState(saved: { tensors: ReadonlyMap<string, Tensor>; numbers: Readonly<Record<string, number>> }): void {
    this.dispose();
    this.paramGroups.forEach((group, g) => {
      const lr = saved.numbers[`${g}.lr`];
      if (lr !== undefined) group.lr = lr;
      group.params.forEach((param, p) => {
        const prefix = `${g}.${p}.`;
        const entry: Record<string, Tensor | number> = {};
        for (const [key, value] of Object.entries(saved.numbers))
          if (key.startsWith(prefix)) entry[key.slice(prefix.length)] = value;
        for (const [key, value] of saved.tensors) {
          if (!key.startsWith(prefix)) continue;
          if (value.shape.join() !== param.shape.join()) {
            throw new Error(
              `optimizer state ${key} has shape [${value.shape.join(', ')}], the parameter [${param.shape.join(', ')}]`,
            );
          }
          entry[key.slice(prefix.length)] = keep(value.clone());
        }
        if (Object.keys(entry).length > 0) this.state.set(param, entry as S);
      });
    });
  }

  /** Frees the optimizer state (momentum buffers, moments). */
  dispose(): void {
    for (const entry of this.state.values()) {
      for (const value of Object.values(entry as object)) {
        if (typeof value === 'object' && value !== null && 'dispose' in value) (value as Tensor).dispose();
      }
    }
    this.state.clear();
  }
}

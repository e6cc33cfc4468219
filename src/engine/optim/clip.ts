// Gradient clipping, as torch.nn.utils.clip_grad_norm_ / clip_grad_value_.
import { noGrad } from '../autograd.js';
import { stack } from '../functional.js';
import { tidy } from '../scope.js';
import type { Tensor } from '../tensor.js';

/** Scales all gradients so their joint p-norm is at most maxNorm; returns the norm before clipping. */
export function clipGradNorm_(params: readonly Tensor[], maxNorm: number, normType = 2): number {
  return noGrad(() =>
    tidy(() => {
      const grads = params.map((p) => p.grad).filter((g): g is Tensor => g !== null);
      if (grads.length === 0) return 0;
      const norms = grads.map((g) => g.norm(normType));
      const total = stack(norms).norm(normType).item();
      if (!Number.isFinite(total)) {
        throw new Error(`clipGradNorm_: the total gradient norm is ${total} (non-finite gradients)`);
      }
      const coefficient = maxNorm / (total + 1e-6);
      if (coefficient < 1) for (const g of grads) g.mul_(coefficient);
      return total;
    }),
  );
}

/** Clamps every gradient element to [-clipValue, clipValue]. */
export function clipGradValue_(params: readonly Tensor[], clipValue: number): void {
  noGrad(() =>
    tidy(() => {
      for (const p of params) p.grad?.clamp_(-clipValue, clipValue);
    }),
  );
}

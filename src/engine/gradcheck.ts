// Numerical gradient checking (like torch.autograd.gradcheck): compares autograd's
// gradients with central finite differences. Use float64 inputs.
import { grad, noGrad } from './autograd.js';
import { tensor } from './creation.js';
import { tidy } from './scope.js';
import type { Tensor } from './tensor.js';

export interface GradcheckResult {
  /** ‖analytic − numeric‖₂ / max(‖numeric‖₂, ‖analytic‖₂) per differentiable input (0 when both vanish). */
  relativeErrors: number[];
  maxRelativeError: number;
}

/**
 * Checks d(Σ v·fn(inputs))/d(input) for every input with requiresGrad, with v a fixed
 * pseudo-random projection so that every output element matters.
 */
export function gradcheck(fn: (...inputs: Tensor[]) => Tensor, inputs: readonly Tensor[], eps = 1e-6): GradcheckResult {
  return tidy(() => {
    const projection = (output: Tensor): Tensor => {
      const weights = Float64Array.from({ length: output.numel }, (_, i) => Math.sin(1.7 * i + 0.3) + 1.25);
      return tensor(weights, { shape: output.shape, dtype: output.dtype });
    };
    const objective = (values: readonly Tensor[]): Tensor => {
      const output = fn(...values);
      return output.mul(projection(output)).sum();
    };
    const differentiable = inputs.map((input, index) => ({ input, index })).filter(({ input }) => input.requiresGrad);
    const analytic = grad(
      objective(inputs),
      differentiable.map(({ input }) => input),
      { allowUnused: true },
    );
    const relativeErrors = differentiable.map(({ input, index }, k) => {
      const base = input.toFloat64Array();
      const numeric = new Float64Array(base.length);
      for (let j = 0; j < base.length; j++) {
        const evaluate = (delta: number): number =>
          noGrad(() =>
            tidy(() => {
              const perturbed = Float64Array.from(base);
              perturbed[j] = (perturbed[j] ?? 0) + delta;
              const values = inputs.map((other, i) =>
                i === index ? tensor(perturbed, { shape: input.shape, dtype: input.dtype }) : other,
              );
              return objective(values).item();
            }),
          );
        numeric[j] = (evaluate(eps) - evaluate(-eps)) / (2 * eps);
      }
      const gradient = analytic[k];
      const analyticValues =
        gradient === null || gradient === undefined ? new Float64Array(base.length) : gradient.toFloat64Array();
      let difference = 0;
      let numericNorm = 0;
      let analyticNorm = 0;
      for (let j = 0; j < base.length; j++) {
        difference += ((analyticValues[j] ?? 0) - (numeric[j] ?? 0)) ** 2;
        numericNorm += (numeric[j] ?? 0) ** 2;
        analyticNorm += (analyticValues[j] ?? 0) ** 2;
      }
      const scale = Math.sqrt(Math.max(numericNorm, analyticNorm));
      return scale < 1e-12 ? 0 : Math.sqrt(difference) / scale;
    });
    return { relativeErrors, maxRelativeError: Math.max(0, ...relativeErrors) };
  });
}

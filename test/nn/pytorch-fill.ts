// The deterministic weights and input of test/fixtures/make-model-fixtures.py (see its
// docstring), for tests that compare a filled model with that script's PyTorch records.
import { callOp } from '../../src/engine/tensor.js';
import { type Tensor, arange, dispose, type nn, noGrad, tensor, tidy } from '../../src/index.js';

/** Fills every state-dict tensor by the script's formula, with the same libtorch ops in float64. */
export function fillLikePyTorch(model: nn.Module): void {
  const stateDict = model.stateDict();
  noGrad(() => {
    let k = 0;
    for (const [name, target] of stateDict) {
      const index = k++;
      const leaf = name.slice(name.lastIndexOf('.') + 1);
      if (leaf === 'num_batches_tracked') {
        target.zero_();
        continue;
      }
      tidy(() => {
        const i = arange(0, target.numel, 1, { dtype: 'float64' });
        const s = callOp(
          'sin',
          i
            .mul(0.37)
            .add(1.3 * index)
            .add(i.mul(i).mul(0.001)).handle,
        );
        const fanIn = target.ndim >= 2 ? target.numel / target.shape[0]! : 1;
        const values =
          leaf === 'running_var'
            ? s.abs().mul(0.5).add(1)
            : leaf === 'running_mean'
              ? s.mul(0.1)
              : target.ndim >= 2
                ? s.mul(Math.sqrt(4 / fanIn))
                : leaf === 'weight'
                  ? s.mul(0.2).add(1)
                  : s.mul(0.1);
        target.copy_(values.float().reshape(target.shape));
      });
    }
  });
  dispose(stateDict);
}

/** The script's input: x[i] = sin(0.11 i + 0.5), float32. */
export function pyTorchInput(shape: readonly number[]): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return tensor(
    Float32Array.from({ length: n }, (_, i) => Math.sin(0.11 * i + 0.5)),
    { shape },
  );
}

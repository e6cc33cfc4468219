// Weight initializations with torch.nn.init's formulas (in place, no grad).
import { noGrad } from '../engine/autograd.js';
import type { Tensor } from '../engine/tensor.js';

export type Nonlinearity = 'linear' | 'conv2d' | 'sigmoid' | 'tanh' | 'relu' | 'leaky_relu';

/** torch.nn.init.calculate_gain */
export function calculateGain(nonlinearity: Nonlinearity, param = 0.01): number {
  switch (nonlinearity) {
    case 'linear':
    case 'conv2d':
    case 'sigmoid':
      return 1;
    case 'tanh':
      return 5 / 3;
    case 'relu':
      return Math.SQRT2;
    case 'leaky_relu':
      return Math.sqrt(2 / (1 + param * param));
  }
}

/** [fanIn, fanOut] of a weight shaped [out, in, ...kernel] (PyTorch's convention). */
export function fans(tensor: Tensor): [number, number] {
  const shape = tensor.shape;
  if (shape.length < 2) throw new Error(`fan in/out needs at least 2 dimensions, got [${shape.join(', ')}]`);
  const receptive = shape.slice(2).reduce((product, size) => product * size, 1);
  return [(shape[1] ?? 0) * receptive, (shape[0] ?? 0) * receptive];
}

export interface KaimingOptions {
  /** Negative slope of the rectifier after this layer (leaky_relu only). */
  a?: number;
  mode?: 'fan_in' | 'fan_out';
  nonlinearity?: Nonlinearity;
}

function kaimingStd(tensor: Tensor, options: KaimingOptions): number {
  const [fanIn, fanOut] = fans(tensor);
  const fan = (options.mode ?? 'fan_in') === 'fan_in' ? fanIn : fanOut;
  return calculateGain(options.nonlinearity ?? 'leaky_relu', options.a ?? 0) / Math.sqrt(fan);
}

export function kaimingUniform_(tensor: Tensor, options: KaimingOptions = {}): Tensor {
  const bound = Math.sqrt(3) * kaimingStd(tensor, options);
  return noGrad(() => tensor.uniform_(-bound, bound));
}

export function kaimingNormal_(tensor: Tensor, options: KaimingOptions = {}): Tensor {
  const std = kaimingStd(tensor, options);
  return noGrad(() => tensor.normal_(0, std));
}

export function xavierUniform_(tensor: Tensor, gain = 1): Tensor {
  const [fanIn, fanOut] = fans(tensor);
  const bound = gain * Math.sqrt(6 / (fanIn + fanOut));
  return noGrad(() => tensor.uniform_(-bound, bound));
}

export function xavierNormal_(tensor: Tensor, gain = 1): Tensor {
  const [fanIn, fanOut] = fans(tensor);
  const std = gain * Math.sqrt(2 / (fanIn + fanOut));
  return noGrad(() => tensor.normal_(0, std));
}

export function uniform_(tensor: Tensor, low = 0, high = 1): Tensor {
  return noGrad(() => tensor.uniform_(low, high));
}

export function normal_(tensor: Tensor, mean = 0, std = 1): Tensor {
  return noGrad(() => tensor.normal_(mean, std));
}

export function constant_(tensor: Tensor, value: number): Tensor {
  return noGrad(() => tensor.fill_(value));
}

export function zeros_(tensor: Tensor): Tensor {
  return constant_(tensor, 0);
}

export function ones_(tensor: Tensor): Tensor {
  return constant_(tensor, 1);
}

/** PyTorch's default for Conv and Linear layers: kaiming_uniform(a=√5) weights, U(±1/√fan_in) bias. */
export function defaultLayerInit_(weight: Tensor, bias: Tensor | null, fanIn = fans(weight)[0]): void {
  kaimingUniform_(weight, { a: Math.sqrt(5) });
  if (bias !== null && fanIn > 0) {
    const bound = 1 / Math.sqrt(fanIn);
    uniform_(bias, -bound, bound);
  }
}

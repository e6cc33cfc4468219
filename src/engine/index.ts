// The tensor engine: libtorch tensors, autograd, scopes and settings.
export * from './autograd.js';
export * from './creation.js';
export * from './dtype.js';
export {
  getHostMemoryPolicy,
  hostMemoryStats,
  releaseHostMemory,
  setHostMemoryPolicy,
  type HostMemoryPolicy,
  type HostMemoryStats,
} from './memory.js';
export * as F from './functional.js';
export { keep, tidy, dispose, type Releasable } from './scope.js';
export {
  Tensor,
  isTensor,
  Reduction,
  type ReductionName,
  type Dims,
  type Device,
  type MemoryFormat,
  type NestedArray,
} from './tensor.js';
export * as optim from './optim/index.js';
export { gradcheck, type GradcheckResult } from './gradcheck.js';
export { DeviceError, cudaDeviceCount, getDefaultDevice, resolveDevice, useDevice } from './device.js';

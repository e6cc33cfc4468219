// Neural-network building blocks: Module, the standard layers and initializers.
export * from './layers.js';
export { Module, StateDictError, type ForwardHook, type LoadResult, type StateDict } from './module.js';
export { activations, forwardWithActivations, type ForwardActivations } from './activations.js';
export * as init from './init.js';
export * as models from './models/index.js';

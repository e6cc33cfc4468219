// Neural-network building blocks: Module, the standard layers and initializers.
export * from './layers.js';
export { Module, StateDictError, type LoadResult, type StateDict } from './module.js';
export * as init from './init.js';
export * as models from './models/index.js';

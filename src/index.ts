// mcldef: backdoor detection and removal for image classifiers, on libtorch.
export * from './engine/index.js';
export * as nn from './nn/index.js';
export * as data from './data/index.js';

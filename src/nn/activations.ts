// Outputs of named layers from one forward pass: what fine-pruning ranks neurons by,
// what attention distillation matches, what neuron pruning inspects.
import { dispose, keep } from '../engine/scope.js';
import type { Tensor } from '../engine/tensor.js';
import type { Module } from './module.js';

export interface ForwardActivations {
  /** The model's output. */
  output: Tensor;
  /** Each requested layer's output, in the order the names were given. */
  activations: Map<string, Tensor>;
}

/** How many valid names an unknown-name error lists. */
const NAMES_SHOWN = 12;

function resolveLayers(model: Module, layerNames: readonly string[]): Map<string, Module> {
  const all = new Map(model.namedModules());
  const layers = new Map<string, Module>();
  for (const name of layerNames) {
    const module = all.get(name);
    if (module === undefined) {
      const names = [...all.keys()].filter((key) => key !== '');
      const shown = names.slice(0, NAMES_SHOWN).join(', ');
      const more = names.length > NAMES_SHOWN ? `, … (${names.length} in all)` : '';
      throw new Error(`unknown layer '${name}' in ${model.constructor.name}; its layers: ${shown}${more}`);
    }
    layers.set(name, module);
  }
  return layers;
}

/**
 * Runs `model.forward(input)` once and returns its output and the outputs of the layers
 * named as in `namedModules()` ('' is the model itself). Each activation is a copy taken
 * when the layer returned, so later in-place ops and freed intermediates do not touch it.
 * Every returned tensor is the caller's, kept out of any tidy scope: `dispose(result)`.
 * Gradients follow the ambient mode (wrap in `noGrad` for values only). A layer that runs
 * more than once yields its last output; one that does not run is an error. The hooks are
 * removed, and nothing is left allocated, even when the forward pass throws.
 */
export function forwardWithActivations(
  model: Module,
  input: Tensor,
  layerNames: readonly string[],
): ForwardActivations {
  const layers = resolveLayers(model, layerNames);
  const captured = new Map<string, Tensor>();
  const removers: (() => void)[] = [];
  try {
    for (const [name, layer] of layers) {
      removers.push(
        layer.registerForwardHook((_module, _input, output) => {
          const copy = keep(output.clone());
          captured.get(name)?.dispose();
          captured.set(name, copy);
        }),
      );
    }
    const result = model.forward(input);
    // An identity model hands back the caller's own input: return a copy instead.
    const output = keep(result === input ? input.clone() : result);
    const silent = [...layers.keys()].filter((name) => !captured.has(name));
    if (silent.length > 0) {
      output.dispose();
      throw new Error(`layers that did not run in ${model.constructor.name}.forward: ${silent.join(', ')}`);
    }
    return { output, activations: new Map([...layers.keys()].map((name) => [name, captured.get(name)!])) };
  } catch (error) {
    dispose(captured);
    throw error;
  } finally {
    for (const remove of removers.reverse()) remove();
  }
}

/** The named layers' outputs from one forward pass; see `forwardWithActivations`. */
export function activations(model: Module, input: Tensor, layerNames: readonly string[]): Map<string, Tensor> {
  const { output, activations: result } = forwardWithActivations(model, input, layerNames);
  output.dispose();
  return result;
}

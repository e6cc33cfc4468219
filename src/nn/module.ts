// Module: PyTorch's nn.Module for this engine. Parameters, buffers and submodules are
// registered by name, so the dotted names (`block1.layer.0.bn1.weight`) and the order
// of `stateDict()` are PyTorch's, and checkpoints move both ways.
import { noGrad } from '../engine/autograd.js';
import { type DType, dtypeCode } from '../engine/dtype.js';
import { keep } from '../engine/scope.js';
import type { Device, MemoryFormat, Tensor } from '../engine/tensor.js';

/** A state dict: dotted names to tensors, in registration order. */
export type StateDict = Map<string, Tensor>;

/**
 * Called after a module's `forward` with its input and output (PyTorch's forward hook,
 * without the option of replacing the output).
 */
export type ForwardHook = (module: Module, input: Tensor, output: Tensor) => void;

export interface LoadResult {
  missingKeys: string[];
  unexpectedKeys: string[];
}

/** Thrown by `loadStateDict` when keys are missing, unexpected or mis-shaped. */
export class StateDictError extends Error {
  constructor(
    readonly missingKeys: readonly string[],
    readonly unexpectedKeys: readonly string[],
    readonly shapeMismatches: readonly { key: string; expected: readonly number[]; got: readonly number[] }[],
  ) {
    const lines: string[] = [];
    if (missingKeys.length > 0) lines.push(`missing keys: ${missingKeys.join(', ')}`);
    if (unexpectedKeys.length > 0) lines.push(`unexpected keys: ${unexpectedKeys.join(', ')}`);
    for (const { key, expected, got } of shapeMismatches) {
      lines.push(
        `size mismatch for ${key}: the model has [${expected.join(', ')}], the state dict [${got.join(', ')}]`,
      );
    }
    super(`error loading state dict:\n  ${lines.join('\n  ')}`);
    this.name = 'StateDictError';
  }
}

export class Module {
  /** Train mode (dropout active, batch norm on batch statistics). */
  training = true;
  readonly #parameters = new Map<string, Tensor | null>();
  readonly #buffers = new Map<string, { tensor: Tensor | null; persistent: boolean }>();
  readonly #modules = new Map<string, Module | null>();
  // One object per registration, so the same function registered twice is two hooks.
  readonly #forwardHooks: { hook: ForwardHook }[] = [];
  /** The instance's own `forward` before hooks wrapped it (undefined: the class's). */
  #unhooked: PropertyDescriptor | undefined;
  #hooked: ((...args: [Tensor]) => Tensor) | undefined;

  /** Applies the module. Layers and models override this. */
  forward(input: Tensor): Tensor {
    void input;
    throw new Error(`${this.constructor.name} does not define forward()`);
  }

  // ---- registration ---------------------------------------------------------------

  /** Registers a trainable tensor (requires grad; never freed by a scope). */
  protected registerParameter<T extends Tensor | null>(name: string, tensor: T): T {
    this.#checkName(name);
    if (tensor !== null) keep(tensor).requiresGrad_(true);
    this.#parameters.set(name, tensor);
    return tensor;
  }

  /** Registers state that is saved but not trained (e.g. BN running statistics). */
  protected registerBuffer<T extends Tensor | null>(name: string, tensor: T, persistent = true): T {
    this.#checkName(name);
    if (tensor !== null) keep(tensor);
    this.#buffers.set(name, { tensor, persistent });
    return tensor;
  }

  protected registerModule<M extends Module | null>(name: string, module: M): M {
    this.#checkName(name);
    this.#modules.set(name, module);
    return module;
  }

  #checkName(name: string): void {
    if (name === '' || name.includes('.')) throw new Error(`invalid parameter/buffer/module name '${name}'`);
    if (this.#parameters.has(name) || this.#buffers.has(name) || this.#modules.has(name)) {
      throw new Error(`'${name}' is already registered on ${this.constructor.name}`);
    }
  }

  // ---- hooks --------------------------------------------------------------------

  /**
   * Calls `hook(module, input, output)` after every `forward` of this module, hooks in
   * registration order, and returns the function that removes it (safe to call twice).
   * The output belongs to the caller of `forward`, which may free it or change it in
   * place afterwards (Sequential frees intermediates, blocks apply relu_): clone what you keep.
   */
  registerForwardHook(hook: ForwardHook): () => void {
    const entry = { hook };
    if (this.#forwardHooks.length === 0) this.#wrapForward();
    this.#forwardHooks.push(entry);
    return () => {
      const index = this.#forwardHooks.indexOf(entry);
      if (index === -1) return;
      this.#forwardHooks.splice(index, 1);
      if (this.#forwardHooks.length === 0) this.#unwrapForward();
    };
  }

  // Models call their submodules' `forward` directly (no __call__ to intercept), so a
  // hooked module gets an own `forward` that shadows the class's until the last hook goes.
  #wrapForward(): void {
    const own = Object.getOwnPropertyDescriptor(this, 'forward');
    this.#unhooked = own;
    const previous = own === undefined ? undefined : this.forward;
    const hooked = (...args: [Tensor]): Tensor => {
      // The class's forward looked up per call, so patches to the prototype still apply.
      const inner = previous ?? (Object.getPrototypeOf(this) as Module).forward;
      const output = inner.apply(this, args);
      // A copy: hooks that remove themselves (or others) do not skip the next one.
      for (const { hook } of [...this.#forwardHooks]) hook(this, args[0], output);
      return output;
    };
    this.#hooked = hooked;
    Object.defineProperty(this, 'forward', { value: hooked, configurable: true, writable: true, enumerable: false });
  }

  #unwrapForward(): void {
    // Someone replaced `forward` after the hooks went in: theirs stays.
    if (this.forward !== this.#hooked) return;
    if (this.#unhooked === undefined) Reflect.deleteProperty(this, 'forward');
    else Object.defineProperty(this, 'forward', this.#unhooked);
    this.#unhooked = undefined;
    this.#hooked = undefined;
  }

  // ---- traversal ------------------------------------------------------------------

  /** This module and every descendant, with dotted names ('' for this one). */
  *namedModules(prefix = ''): Generator<[string, Module]> {
    yield [prefix, this];
    for (const [name, module] of this.#modules) {
      if (module !== null) yield* module.namedModules(prefix === '' ? name : `${prefix}.${name}`);
    }
  }

  *namedChildren(): Generator<[string, Module]> {
    for (const [name, module] of this.#modules) if (module !== null) yield [name, module];
  }

  *namedParameters(): Generator<[string, Tensor]> {
    for (const [prefix, module] of this.namedModules()) {
      for (const [name, tensor] of module.#parameters) {
        if (tensor !== null) yield [prefix === '' ? name : `${prefix}.${name}`, tensor];
      }
    }
  }

  parameters(): Tensor[] {
    return [...this.namedParameters()].map(([, tensor]) => tensor);
  }

  *namedBuffers(options: { persistentOnly?: boolean } = {}): Generator<[string, Tensor]> {
    for (const [prefix, module] of this.namedModules()) {
      for (const [name, { tensor, persistent }] of module.#buffers) {
        if (tensor !== null && (persistent || options.persistentOnly !== true)) {
          yield [prefix === '' ? name : `${prefix}.${name}`, tensor];
        }
      }
    }
  }

  buffers(): Tensor[] {
    return [...this.namedBuffers()].map(([, tensor]) => tensor);
  }

  /** Number of trainable scalars. */
  numParameters(): number {
    return this.parameters().reduce((total, p) => total + p.numel, 0);
  }

  // ---- modes ----------------------------------------------------------------------

  train(mode = true): this {
    for (const [, module] of this.namedModules()) module.training = mode;
    return this;
  }

  eval(): this {
    return this.train(false);
  }

  /** Clears every parameter's gradient (PyTorch's set_to_none behaviour). */
  zeroGrad(): void {
    for (const parameter of this.parameters()) parameter.grad = null;
  }

  /** Freezes or unfreezes every parameter. */
  requiresGrad_(value = true): this {
    for (const parameter of this.parameters()) parameter.requiresGrad_(value);
    return this;
  }

  // ---- state dicts ------------------------------------------------------------------

  /**
   * Parameters, then buffers, per module in registration order, as PyTorch orders them.
   * The tensors are detached handles sharing storage with the module: dispose them
   * (or the whole map with `dispose()`) when done.
   */
  stateDict(): StateDict {
    const result: StateDict = new Map();
    for (const [prefix, module] of this.namedModules()) {
      const key = (name: string): string => (prefix === '' ? name : `${prefix}.${name}`);
      for (const [name, tensor] of module.#parameters) if (tensor !== null) result.set(key(name), tensor.detach());
      for (const [name, { tensor, persistent }] of module.#buffers) {
        if (tensor !== null && persistent) result.set(key(name), tensor.detach());
      }
    }
    return result;
  }

  /**
   * Copies values from `stateDict` into this module's tensors (converting dtype and
   * device). Strict (default): any missing, unexpected or mis-shaped key throws a
   * StateDictError naming them all, and nothing is copied. Non-strict: shapes must
   * still match; the missing and unexpected keys are returned.
   */
  loadStateDict(stateDict: ReadonlyMap<string, Tensor>, options: { strict?: boolean } = {}): LoadResult {
    const strict = options.strict ?? true;
    const own = new Map<string, Tensor>([...this.namedParameters(), ...this.namedBuffers({ persistentOnly: true })]);
    const missingKeys = [...own.keys()].filter((key) => !stateDict.has(key));
    const unexpectedKeys = [...stateDict.keys()].filter((key) => !own.has(key));
    const shapeMismatches: { key: string; expected: readonly number[]; got: readonly number[] }[] = [];
    for (const [key, target] of own) {
      const source = stateDict.get(key);
      if (source === undefined) continue;
      if (source.shape.length !== target.shape.length || source.shape.some((size, i) => size !== target.shape[i])) {
        shapeMismatches.push({ key, expected: target.shape, got: source.shape });
      }
    }
    if (shapeMismatches.length > 0 || (strict && (missingKeys.length > 0 || unexpectedKeys.length > 0))) {
      throw new StateDictError(missingKeys, unexpectedKeys, shapeMismatches);
    }
    noGrad(() => {
      for (const [key, target] of own) {
        const source = stateDict.get(key);
        if (source !== undefined) target.copy_(source);
      }
    });
    return { missingKeys, unexpectedKeys };
  }

  // ---- placement and lifetime ---------------------------------------------------------

  /**
   * Moves (or converts) every parameter and buffer in place; floating dtypes only change
   * float tensors. A memory format re-lays out the 4-D ones (convolution weights), as
   * PyTorch's `model.to(memory_format=…)`: with channels-last weights every convolution
   * runs in NHWC, which oneDNN computes without reordering each input.
   */
  to(target: Device | DType | MemoryFormat): this {
    const isDType = target in dtypeCode;
    const isFormat = target === 'channels_last' || target === 'contiguous';
    noGrad(() => {
      for (const tensor of [...this.parameters(), ...this.buffers()]) {
        if (isDType && !['float16', 'float32', 'float64'].includes(tensor.dtype)) continue;
        if (isFormat && tensor.shape.length !== 4) continue;
        const requiresGrad = tensor.requiresGrad;
        const moved = isFormat
          ? tensor.contiguous(target)
          : tensor.to(isDType ? { dtype: target as DType, copy: true } : { device: target, copy: true });
        tensor.replaceData(moved);
        if (requiresGrad) tensor.requiresGrad_(true);
      }
    });
    return this;
  }

  /** Frees every parameter and buffer now. The module is unusable afterwards. */
  dispose(): void {
    for (const tensor of [...this.parameters(), ...this.buffers()]) tensor.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

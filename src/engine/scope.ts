// Deterministic tensor lifetimes. N-API finalizers run too late to keep a training
// loop's memory flat, so tensors are freed explicitly: `dispose()`, `using`, or a
// scope (`tidy`) that frees everything made inside it except what it returns.

/** Anything that owns native memory and can free it now. */
export interface Releasable {
  dispose(): void;
  readonly isDisposed: boolean;
}

const scopes: Releasable[][] = [];
const kept = new WeakSet<Releasable>();

/** Called by every new tensor: the innermost open scope takes ownership. */
export function track(item: Releasable): void {
  const scope = scopes[scopes.length - 1];
  if (scope !== undefined) scope.push(item);
}

/** Excludes a tensor from every scope: its owner must dispose it. */
export function keep<T extends Releasable>(item: T): T {
  kept.add(item);
  return item;
}

/** Nested values a scope's result may hold tensors in. */
function collect(value: unknown, into: Set<Releasable>, seen: Set<object>): void {
  if (value === null || typeof value !== 'object' || seen.has(value)) return;
  seen.add(value);
  if (isReleasable(value)) {
    into.add(value);
  } else if (Array.isArray(value)) {
    for (const element of value) collect(element, into, seen);
  } else if (value instanceof Map) {
    for (const element of value.values()) collect(element, into, seen);
  } else if (Object.getPrototypeOf(value) === Object.prototype) {
    for (const element of Object.values(value)) collect(element, into, seen);
  }
}

function isReleasable(value: object): value is Releasable {
  return typeof (value as Releasable).dispose === 'function' && 'isDisposed' in value;
}

/**
 * Runs `fn` and frees every tensor created during it, except those reachable from its
 * result (through arrays, Maps and plain objects), which move to the enclosing scope.
 */
export function tidy<T>(fn: () => T): T {
  const scope: Releasable[] = [];
  scopes.push(scope);
  let result: T;
  try {
    result = fn();
  } catch (error) {
    scopes.pop();
    for (const item of scope) if (!kept.has(item)) item.dispose();
    throw error;
  }
  scopes.pop();
  if (result instanceof Promise) {
    throw new TypeError('tidy: the function returned a Promise; scopes are synchronous (await outside tidy)');
  }
  const survivors = new Set<Releasable>();
  collect(result, survivors, new Set());
  const parent = scopes[scopes.length - 1];
  for (const item of scope) {
    if (survivors.has(item) || kept.has(item)) {
      if (parent !== undefined && !kept.has(item) && !item.isDisposed) parent.push(item);
    } else {
      item.dispose();
    }
  }
  return result;
}

/** Frees every tensor in a nested value (arrays, Maps, plain objects). */
export function dispose(value: unknown): void {
  const items = new Set<Releasable>();
  collect(value, items, new Set());
  for (const item of items) item.dispose();
}

// A checkpoint store in memory (clones), like a file store would keep them; for resume tests.
import { type Tensor, dispose, tidy } from '../../src/index.js';
import type { CheckpointStore } from '../../src/train/trainer.js';

export class MemoryStore implements CheckpointStore {
  readonly files = new Map<string, { tensors: Map<string, Tensor>; metadata: Record<string, string> }>();
  exists(path: string): boolean {
    return this.files.has(path);
  }
  remove(path: string): void {
    const old = this.files.get(path);
    if (old) dispose([...old.tensors.values()]);
    this.files.delete(path);
  }
  save(path: string, tensors: ReadonlyMap<string, Tensor>, metadata: Record<string, string>): void {
    const old = this.files.get(path);
    if (old) dispose([...old.tensors.values()]);
    this.files.set(path, {
      tensors: new Map([...tensors].map(([k, t]) => [k, tidy(() => t.clone())])),
      metadata: { ...metadata },
    });
  }
  load(path: string): { tensors: Map<string, Tensor>; metadata: Record<string, string> } {
    const file = this.files.get(path)!;
    return {
      tensors: new Map([...file.tensors].map(([k, t]) => [k, tidy(() => t.clone())])),
      metadata: { ...file.metadata },
    };
  }
}

// One error type for everything that can be wrong with a checkpoint file, with a code a
// caller can branch on; the message names the file (when known) and the problem.

export type CheckpointErrorCode =
  /** The input ends before a record, pickle opcode or storage does. */
  | 'truncated'
  /** Not a checkpoint we know: no zip, legacy-pickle or safetensors signature. */
  | 'bad-format'
  /** A legacy checkpoint whose first pickle is not PyTorch's magic number or protocol. */
  | 'bad-magic'
  /** A malformed pickle stream (bad opcode argument, stack or memo misuse...). */
  | 'bad-pickle'
  /** A pickle GLOBAL/STACK_GLOBAL outside the allow-list (the name is in the message). */
  | 'refused-global'
  /** A pickle opcode that could run code (INST, OBJ, EXT*) or a call on something not allowed. */
  | 'refused-opcode'
  /** A malformed zip archive (directory, header, CRC or compression). */
  | 'bad-zip'
  /** A record the pickle refers to (data.pkl, a storage) is not in the archive. */
  | 'missing-record'
  /** A storage whose declared size disagrees with its bytes. */
  | 'bad-storage'
  /** A tensor whose offset, shape or strides do not fit its storage, or are absurd. */
  | 'bad-tensor'
  /** An element type the engine has no dtype for (complex, quantized...). */
  | 'unsupported-dtype'
  /** A declared length or count beyond what the input can hold or what is sane. */
  | 'too-large'
  /** Containers nested deeper than the readers follow. */
  | 'too-deep'
  /** A safetensors header that is not valid JSON or does not describe its buffer. */
  | 'bad-header'
  /** A checkpoint without a usable state dict, or with clashing keys. */
  | 'bad-state-dict'
  /** Metadata that cannot be written (not numbers, strings, booleans, arrays, objects). */
  | 'bad-metadata'
  /** The file could not be read or written. */
  | 'io';

export class CheckpointError extends Error {
  constructor(
    readonly code: CheckpointErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'CheckpointError';
  }

  /** The same error with the file it came from in front of the message. */
  withSource(source: string): CheckpointError {
    if (this.message.startsWith(source + ': ')) return this;
    return new CheckpointError(this.code, `${source}: ${this.message}`, { cause: this });
  }
}

/** Runs `fn`; a CheckpointError it throws gets `source` prefixed to its message. */
export function namingSource<T>(source: string, fn: () => T): T {
  try {
    return fn();
  } catch (error) {
    if (error instanceof CheckpointError) throw error.withSource(source);
    throw error;
  }
}

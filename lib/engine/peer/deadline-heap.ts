// A binary min-heap of entries keyed by their absolute deadline, with removal of any entry.

/**
 * What the heap needs from an entry. The heap writes `heapIndex` (the entry's slot, -1 when it is
 * not held) so it can remove any entry in O(log n) without searching; an entry therefore belongs
 * to at most one heap at a time, and its `deadline` must not change while it is held.
 */
export interface DeadlineHeapEntry {
  /** Absolute time (ms) the entry falls due; a finite number. */
  readonly deadline: number;
  /** Maintained by the heap: the entry's slot, or -1 while no heap holds it. */
  heapIndex: number;
}

/**
 * Min-heap of entries ordered by `deadline`, ties broken by insertion order (so entries due at
 * the same time come out first-in, first-out). `push`, `pop` and `remove` are O(log n), `peek`
 * and `has` O(1). Never fails: removing an entry it does not hold returns `false`.
 */
export class DeadlineHeap<T extends DeadlineHeapEntry> {
  private readonly slots: T[] = [];
  /** Insertion sequence of the entry in the same slot, for the FIFO tie-break. */
  private readonly seqs: number[] = [];
  private nextSeq = 0;

  /** Number of entries held. */
  get size(): number {
    return this.slots.length;
  }

  /** True when this heap holds `entry`. */
  has(entry: T): boolean {
    const i = entry.heapIndex;
    return i >= 0 && i < this.slots.length && this.slots[i] === entry;
  }

  /** Adds `entry`. Adding an entry this heap already holds changes nothing. */
  push(entry: T): void {
    if (this.has(entry)) return;
    const i = this.slots.length;
    this.slots.push(entry);
    this.seqs.push(this.nextSeq++);
    entry.heapIndex = i;
    this.siftUp(i);
  }

  /** The entry with the earliest deadline, left in place; `undefined` when empty. */
  peek(): T | undefined {
    return this.slots[0];
  }

  /** Removes and returns the entry with the earliest deadline; `undefined` when empty. */
  pop(): T | undefined {
    if (this.slots.length === 0) return undefined;
    const top = this.slots[0];
    this.removeAt(0);
    return top;
  }

  /** Removes and returns the earliest entry if its deadline is at or before `now`, else `undefined`. */
  popDue(now: number): T | undefined {
    const top = this.slots[0];
    if (top === undefined || top.deadline > now) return undefined;
    this.removeAt(0);
    return top;
  }

  /** Removes `entry` wherever it sits. Returns `false` (and changes nothing) if it is not held. */
  remove(entry: T): boolean {
    if (!this.has(entry)) return false;
    this.removeAt(entry.heapIndex);
    return true;
  }

  /** Removes every entry (each one's `heapIndex` becomes -1). */
  clear(): void {
    for (const entry of this.slots) entry.heapIndex = -1;
    this.slots.length = 0;
    this.seqs.length = 0;
  }

  private removeAt(i: number): void {
    const slots = this.slots;
    const removed = slots[i];
    const lastIndex = slots.length - 1;
    const last = slots.pop() as T;
    const lastSeq = this.seqs.pop() as number;
    removed.heapIndex = -1;
    if (i === lastIndex) return;
    slots[i] = last;
    this.seqs[i] = lastSeq;
    last.heapIndex = i;
    // The moved entry may belong above or below its new slot, never both.
    if (i > 0 && this.before(i, (i - 1) >> 1)) this.siftUp(i);
    else this.siftDown(i);
  }

  /** True when the entry in slot `i` must come out before the entry in slot `j`. */
  private before(i: number, j: number): boolean {
    const a = this.slots[i].deadline;
    const b = this.slots[j].deadline;
    return a < b || (a === b && this.seqs[i] < this.seqs[j]);
  }

  private siftUp(i: number): void {
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.before(i, parent)) break;
      this.swap(i, parent);
      i = parent;
    }
  }

  private siftDown(i: number): void {
    const n = this.slots.length;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= n) break;
      const right = left + 1;
      const child = right < n && this.before(right, left) ? right : left;
      if (!this.before(child, i)) break;
      this.swap(i, child);
      i = child;
    }
  }

  private swap(i: number, j: number): void {
    const slots = this.slots;
    const seqs = this.seqs;
    const a = slots[i];
    const b = slots[j];
    slots[i] = b;
    slots[j] = a;
    b.heapIndex = i;
    a.heapIndex = j;
    const s = seqs[i];
    seqs[i] = seqs[j];
    seqs[j] = s;
  }
}

// A min-heap of entries keyed by their absolute deadline, with removal of any entry; entries
// pushed in deadline order take an O(1) path.

/** `heapIndex` of an entry in run slot r is `RUN_BASE - r` (-2, -3, …); -1 means not held. */
const RUN_BASE = -2;
/** The run is compacted only past this many holes. */
const RUN_MIN_COMPACT = 32;

/**
 * What the heap needs from an entry. The heap writes `heapIndex` (where it keeps the entry, -1
 * when it is not held) so it can remove any entry without searching; an entry therefore belongs
 * to at most one heap at a time, and its `deadline` must not change while it is held.
 */
export interface DeadlineHeapEntry {
  /** Absolute time (ms) the entry falls due; a finite number. */
  readonly deadline: number;
  /** Maintained by the heap: where it keeps the entry, or -1 while no heap holds it. */
  heapIndex: number;
}

/**
 * Min-heap of entries ordered by `deadline`, ties broken by insertion order (so entries due at
 * the same time come out first-in, first-out). `push`, `pop` and `remove` are O(log n), `peek`
 * and `has` O(1). Never fails: removing an entry it does not hold returns `false`.
 *
 * Most owners push deadlines in order (each `now + the same timeout`) and remove entries roughly
 * in that order, so an entry due no earlier than the last one pushed that way joins a FIFO run
 * instead of the binary heap: O(1) to push and to remove from anywhere. Only entries pushed out of
 * order pay for the heap.
 */
export class DeadlineHeap<T extends DeadlineHeapEntry> {
  private readonly slots: T[] = [];
  /** Insertion sequence of the entry in the same slot, for the FIFO tie-break. */
  private readonly seqs: number[] = [];
  private nextSeq = 0;
  // The FIFO run: live entries in non-decreasing deadline order, with holes (`undefined`) where
  // entries were removed. An entry in run slot r has heapIndex RUN_BASE - r.
  private run: (T | undefined)[] = [];
  private runSeqs: number[] = [];
  private runHead = 0;
  private runLive = 0;
  private runLastDeadline = -Infinity;

  /** Number of entries held. */
  get size(): number {
    return this.slots.length + this.runLive;
  }

  /** True when this heap holds `entry`. */
  has(entry: T): boolean {
    const i = entry.heapIndex;
    if (i >= 0) return i < this.slots.length && this.slots[i] === entry;
    const r = RUN_BASE - i;
    return r >= 0 && r < this.run.length && this.run[r] === entry;
  }

  /** Adds `entry`. Adding an entry this heap already holds changes nothing. */
  push(entry: T): void {
    if (this.has(entry)) return;
    const seq = this.nextSeq++;
    if (entry.deadline >= this.runLastDeadline) {
      entry.heapIndex = RUN_BASE - this.run.length;
      this.run.push(entry);
      this.runSeqs.push(seq);
      this.runLive++;
      this.runLastDeadline = entry.deadline;
      return;
    }
    const i = this.slots.length;
    this.slots.push(entry);
    this.seqs.push(seq);
    entry.heapIndex = i;
    this.siftUp(i);
  }

  /** The entry with the earliest deadline, left in place; `undefined` when empty. */
  peek(): T | undefined {
    const top = this.slots[0];
    const first = this.runLive > 0 ? (this.run[this.runHead] as T) : undefined;
    if (first === undefined) return top;
    if (top === undefined) return first;
    const a = first.deadline;
    const b = top.deadline;
    return a < b || (a === b && this.runSeqs[this.runHead] < this.seqs[0]) ? first : top;
  }

  /** Removes and returns the entry with the earliest deadline; `undefined` when empty. */
  pop(): T | undefined {
    const top = this.peek();
    if (top !== undefined) this.remove(top);
    return top;
  }

  /** Removes and returns the earliest entry if its deadline is at or before `now`, else `undefined`. */
  popDue(now: number): T | undefined {
    const top = this.peek();
    if (top === undefined || top.deadline > now) return undefined;
    this.remove(top);
    return top;
  }

  /** Removes `entry` wherever it sits. Returns `false` (and changes nothing) if it is not held. */
  remove(entry: T): boolean {
    if (!this.has(entry)) return false;
    if (entry.heapIndex >= 0) this.removeAt(entry.heapIndex);
    else this.removeFromRun(RUN_BASE - entry.heapIndex);
    return true;
  }

  /** Removes every entry (each one's `heapIndex` becomes -1). */
  clear(): void {
    for (const entry of this.slots) entry.heapIndex = -1;
    for (const entry of this.run) if (entry !== undefined) entry.heapIndex = -1;
    this.slots.length = 0;
    this.seqs.length = 0;
    this.resetRun();
  }

  private removeFromRun(r: number): void {
    (this.run[r] as T).heapIndex = -1;
    this.run[r] = undefined;
    this.runLive--;
    if (this.runLive === 0) {
      this.resetRun();
      return;
    }
    while (this.run[this.runHead] === undefined) this.runHead++;
    // Holes cost memory only: squeeze them out once they outnumber the live entries.
    if (this.run.length - this.runLive > Math.max(RUN_MIN_COMPACT, this.runLive)) this.compactRun();
  }

  private compactRun(): void {
    const run: T[] = [];
    const seqs: number[] = [];
    for (let r = this.runHead; r < this.run.length; r++) {
      const entry = this.run[r];
      if (entry === undefined) continue;
      entry.heapIndex = RUN_BASE - run.length;
      run.push(entry);
      seqs.push(this.runSeqs[r]);
    }
    this.run = run;
    this.runSeqs = seqs;
    this.runHead = 0;
  }

  private resetRun(): void {
    this.run = [];
    this.runSeqs = [];
    this.runHead = 0;
    this.runLive = 0;
    this.runLastDeadline = -Infinity;
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

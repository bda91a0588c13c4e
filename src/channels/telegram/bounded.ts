/** A set that forgets its oldest entries past `capacity`, so memory stays bounded. */
export class BoundedSet<T> {
  private readonly items = new Set<T>();
  constructor(private readonly capacity: number) {}

  has(item: T): boolean {
    return this.items.has(item);
  }

  /** Adds `item`; returns false when it was already there. */
  add(item: T): boolean {
    if (this.items.has(item)) return false;
    this.items.add(item);
    if (this.items.size > this.capacity) {
      const oldest = this.items.values().next();
      if (!oldest.done) this.items.delete(oldest.value);
    }
    return true;
  }

  delete(item: T): void {
    this.items.delete(item);
  }
}

/** A map that forgets its oldest entries past `capacity`. */
export class BoundedMap<K, V> {
  private readonly items = new Map<K, V>();
  constructor(private readonly capacity: number) {}

  get(key: K): V | undefined {
    return this.items.get(key);
  }

  set(key: K, value: V): void {
    this.items.delete(key);
    this.items.set(key, value);
    if (this.items.size > this.capacity) {
      const oldest = this.items.keys().next();
      if (!oldest.done) this.items.delete(oldest.value);
    }
  }

  delete(key: K): void {
    this.items.delete(key);
  }
}

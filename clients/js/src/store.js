// The presence store: what a client knows of everyone it may see, kept right by the server's
// events alone. A snapshot (the first after every connection, and every resync) replaces what
// was known; a `user:status` updates one record; a `presence:state` also says who is in a
// conversation; `presence:subscribed` brings the subjects a socket follows (members of large
// conversations), `presence:count` a large conversation's online count. No framework:
// subscribe(fn) is called after every change.

export class PresenceStore {
  #records = new Map(); // userId -> record
  #members = new Map(); // conversationId -> [userId]
  #counts = new Map(); // conversationId -> {online, total}, of large conversations
  #listeners = new Set();

  /** The record of one subject, or undefined. */
  get(id) {
    return this.#records.get(id);
  }

  /** Every record known, in no particular order. */
  all() {
    return [...this.#records.values()];
  }

  /** The records of a conversation's members (known once it was joined), in its order. */
  members(conversationId) {
    const ids = this.#members.get(conversationId) || [];
    return ids.map((id) => this.#records.get(id)).filter(Boolean);
  }

  /** A large conversation's online count, `{online, total}`, once one was heard. */
  countOf(conversationId) {
    return this.#counts.get(conversationId);
  }

  /** fn(store, change) after every change; returns the function that unsubscribes it. */
  subscribe(fn) {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  /** A presence:snapshot: `{users, resync?}`. It replaces every record (a resync or a new
   *  connection may follow missed transitions); conversations' member lists are kept. */
  snapshot({ users, resync = false }) {
    this.#records = new Map(users.map((record) => [record.userId, record]));
    this.#emit({ type: "snapshot", resync, users });
  }

  /** A user:status: one record, newer than what was known. */
  status(record) {
    const known = this.#records.get(record.userId);
    this.#records.set(record.userId, known ? { ...known, ...record } : record);
    this.#emit({ type: "status", record });
  }

  /** A presence:state: `{conversationId, users}`, the members of a conversation. */
  state({ conversationId, users }) {
    for (const record of users) this.#records.set(record.userId, record);
    this.#members.set(
      conversationId,
      users.map((record) => record.userId),
    );
    this.#emit({ type: "state", conversationId, users });
  }

  /** A presence:subscribed: `{users}`, the records of the subjects now followed. */
  subscribed({ users }) {
    for (const record of users) this.#records.set(record.userId, record);
    this.#emit({ type: "subscribed", users });
  }

  /** A presence:count: `{conversationId, online, total}` of a large conversation. */
  counted({ conversationId, online, total }) {
    this.#counts.set(conversationId, { online, total });
    this.#emit({ type: "count", conversationId, online, total });
  }

  #emit(change) {
    for (const fn of [...this.#listeners]) {
      try {
        fn(this, change);
      } catch (error) {
        // One broken subscriber must not silence the others.
        console.error("presence: a store subscriber failed", error);
      }
    }
  }
}

import type { Socket } from "socket.io-client";

export type Status = "online" | "away" | "dnd" | "offline";
export type ManualStatus = "online" | "away" | "dnd" | "invisible";

/** One subject's presence, as the server sends it (SPEC §6). */
export interface PresenceRecord {
  userId: string;
  username: string;
  isAnonymous: boolean;
  isOnline: boolean;
  status: Status;
  lastActiveAt: string | null;
  lastSeen: string | null;
  /** Instead of lastSeen when its moment is not shared with the viewer. */
  lastSeenApprox: "recently" | "within_week" | "within_month" | "long_ago" | null;
  /** A custom status: its text and when it ends (null when none, or when it looks offline). */
  statusText: string | null;
  statusUntil: string | null;
  /** Away because the person has been idle (its chosen status is online). */
  autoAway: boolean;
  /** Only in the subject's own record. */
  manualStatus?: ManualStatus;
}

export interface StatusChoice {
  /** At most 100 characters; "" clears it. */
  text?: string;
  /** When the status ends by itself (in the future, at most 30 days away). */
  until?: Date | string;
}

export type StoreChange =
  | { type: "snapshot"; resync: boolean; users: PresenceRecord[] }
  | { type: "status"; record: PresenceRecord }
  | { type: "state"; conversationId: string; users: PresenceRecord[] }
  | { type: "subscribed"; users: PresenceRecord[] }
  | { type: "count"; conversationId: string; online: number; total: number };

export declare class PresenceStore {
  get(id: string): PresenceRecord | undefined;
  all(): PresenceRecord[];
  members(conversationId: string): PresenceRecord[];
  /** A large conversation's online count, once one was heard. */
  countOf(conversationId: string): { online: number; total: number } | undefined;
  subscribe(fn: (store: PresenceStore, change: StoreChange) => void): () => boolean;
  snapshot(snapshot: { users: PresenceRecord[]; resync?: boolean }): void;
  status(record: PresenceRecord): void;
  state(state: { conversationId: string; users: PresenceRecord[] }): void;
  subscribed(answer: { users: PresenceRecord[] }): void;
  counted(count: { conversationId: string; online: number; total: number }): void;
}

export interface ConnectOptions {
  /** The presence server (or its load balancer); the same origin when omitted in a browser. */
  url?: string;
  /** A user's JWT (presence's own, or the host platform's). */
  token?: string;
  /** A guest's session token. */
  sessionToken?: string;
  transports?: ("websocket" | "polling")[];
  reconnectionDelayMs?: number;
  reconnectionDelayMaxMs?: number;
  /** Activity is sent at most this often (30 000 ms). */
  activityEveryMs?: number;
  /** false: do not listen to user input (call activity() yourself). */
  trackInput?: boolean;
  /** Where user input is listened to (window in a browser). */
  inputTarget?: EventTarget | null;
}

export interface PresenceClient {
  socket: Socket;
  store: PresenceStore;
  /** Who the server authenticated, once it did. */
  readonly user: { id: string; username: string; isAnonymous: boolean } | null;
  /** Tell the server the person is here; false when one was sent within activityEveryMs. */
  activity(): boolean;
  /** Join a conversation's room (again after every reconnection) and get its state. */
  join(conversationId: string): void;
  /** Follow these subjects' user:status (at most 200; replaces the previous list; again after
   *  every reconnection and resync): how members of a large conversation are heard. */
  subscribe(ids: string[]): void;
  unsubscribe(): void;
  /** A manual status, optionally with a text and an end. */
  setStatus(status: ManualStatus, choice?: StatusChoice): void;
  close(): void;
}

export declare function connect(options: ConnectOptions): PresenceClient;

// Compiled (never run) by tests/e2e/test_js_client.py with `tsc --noEmit`: the published types
// describe what a TypeScript front end writes.
import { connect, PresenceStore, type PresenceRecord, type StoreChange } from "../src/index.js";

const client = connect({ url: "http://localhost:3000", token: "t", trackInput: false });
const unsubscribe: () => boolean = client.store.subscribe(
  (store: PresenceStore, change: StoreChange) => {
    if (change.type === "status") {
      const record: PresenceRecord = change.record;
      const online: boolean = record.isOnline && store.get(record.userId) !== undefined;
      void online;
    }
  },
);
client.join("conversation-id");
client.setStatus("dnd");
client.subscribe(["a", "b"]);
const count: number | undefined = client.store.countOf("conversation-id")?.online;
void count;
client.unsubscribe();
client.setStatus("away", { text: "lunch", until: new Date(Date.now() + 3_600_000) });
const members: PresenceRecord[] = client.store.members("conversation-id");
const sent: boolean = client.activity();
void [members, sent, unsubscribe, client.user?.username];
client.close();

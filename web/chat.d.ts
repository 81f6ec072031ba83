// Type declarations of web/chat.js, the client of ngx_http_chat_module
// (WebSocket protocol chat.v1 and the REST routes: docs/protocol.md).

/** The state of the connection, as the "state" event reports it. */
export type ConnectionState = "connecting" | "open" | "reconnecting" | "closed";

/**
 * The error codes of the server, and those of the client itself:
 * `timeout` (no answer within `requestTimeout`; the connection is then
 * given up and made again), `cancelled` (a send removed with
 * {@link ChatClient.cancel}, or an upload aborted through its signal).
 */
export type ErrorCode =
  | "bad_request" | "unauthorized" | "forbidden" | "not_found" | "conflict"
  | "too_large" | "rate_limited" | "unavailable" | "internal"
  | "insufficient_storage"
  | "timeout" | "cancelled";

/** A user, from the claims of their token. */
export interface User {
  id: string;
  /** Falls back to the id. */
  name: string;
  avatar?: string;
}

/**
 * A stored attachment, as the server describes it (docs/protocol.md,
 * Message): an upload ({@link UploadAttachment}), or a link
 * ({@link LinkAttachment}: https to a host of chat_attachment_hosts, or a
 * message stored before uploads existed).
 */
export type Attachment = UploadAttachment | LinkAttachment;

/** An upload the sender attached; everything but the ids is the server's,
 *  read from the upload (never from the client). */
export interface UploadAttachment {
  upload_id: number;
  /** The file name declared at upload, or null. */
  name: string | null;
  /** Detected from the bytes (image/png, application/pdf, ...). */
  type: string;
  size: number;
  /** Images only, else null. */
  width: number | null;
  height: number | null;
  /** Where it is downloaded: "/api/chat/files/<upload_id>" (relative to
   *  the site; a client with another apiBase builds it from upload_id). */
  url: string;
  /** An image's thumbnail (another upload of the sender), or null. */
  thumbnail: { upload_id: number; width: number | null;
               height: number | null; url: string } | null;
}

/** A link: metadata of a file elsewhere, nothing stored here. */
export interface LinkAttachment {
  url: string;
  name: string | null;
  mime: string | null;
  size: number | null;
}

/** What a send attaches: the sender's own upload (with an image upload of
 *  the sender as its thumbnail), or, only where the server's
 *  chat_attachment_hosts lists the host, an https link. At most 10. */
export type AttachmentInput =
  | { upload_id: number; thumbnail_id?: number | null }
  | { url: string; name?: string | null; mime?: string | null;
      size?: number | null };

export interface Message {
  id: number;
  conversation_id: number;
  /** The message's place in its conversation. */
  seq: number;
  /** The number of the message's last change (edit or delete). */
  updated_seq: number;
  sender_id: string;
  /** Empty once deleted. */
  body: string;
  client_msg_id: string | null;
  attachments: Attachment[];
  reply_to: number | null;
  /** RFC 3339 UTC with milliseconds. */
  created_at: string;
  edited_at: string | null;
  deleted: boolean;
  /** Present (true) on a message posted by a service. */
  system?: true;
}

/** A piece of a search snippet, in order; the text is the message's own. */
export interface SnippetPart {
  text: string;
  /** True for words that matched the query. */
  match: boolean;
}

/** One of the `results` of REST `GET messages/search`. */
export interface MessageSearchResult {
  message: Message;
  rank: number;
  /** The snippet with « and » around matches only (a body's own « » show as ‹ ›). */
  snippet: string;
  /** The snippet as parts: build highlights from these. */
  snippet_parts: SnippetPart[];
}

export interface Member {
  user_id: string;
  role: "owner" | "admin" | "member";
  last_read_seq: number;
  last_delivered_seq: number;
}

export interface Conversation {
  id: number;
  kind: "direct" | "group";
  title: string | null;
  /** A link to an object of the host application, e.g. "ad:123". */
  ref: string | null;
  metadata: Record<string, unknown>;
  created_at: string;
  /** At most the first 100 members (and you): page through all of them
   *  with `members()` when members_count is larger. */
  members: Member[];
  /** All members, also those a capped `members` leaves out. */
  members_count: number;
  last_message: Message | null;
  last_seq: number;
  unread_count: number;
  muted: boolean;
  archived: boolean;
}

export interface Presence {
  online: boolean;
  /** null while online. */
  last_seen: string | null;
}

/** presence.count's answer. */
export interface PresenceCount {
  conversation_id: number;
  members: number;
  online: number;
}

/** The first frame of every connection. */
export interface WelcomeEvent {
  type: "welcome";
  user: User;
  /** An opaque id of this connection. */
  session: string;
  heartbeat_s: number;
  limits: { max_message_size: number; max_message_length: number;
            max_json_depth: number };
  protocol: "chat.v1";
}

export interface MessageEvent {
  type: "message.created" | "message.updated" | "message.deleted";
  /** The whole current message: keep messages by id and upsert. */
  message: Message;
}

export interface TypingEvent {
  type: "typing";
  conversation_id: number;
  user_id: string;
  active: boolean;
}

export interface PresenceEvent {
  type: "presence";
  user_id: string;
  online: boolean;
  last_seen: string | null;
}

export interface ReceiptEvent {
  type: "receipt";
  conversation_id: number;
  user_id: string;
  kind: "delivered" | "read";
  seq: number;
}

export interface ConversationEvent {
  type: "conversation.created" | "conversation.updated";
  conversation: Conversation;
}

export interface MemberEvent {
  type: "member.joined" | "member.left";
  conversation_id: number;
  user_id: string;
  role: Member["role"];
}

/** What the events of {@link ChatClient.on} carry. */
export interface ChatEventMap {
  /** A connection is ready (at its welcome); `reconnect` is false the
   *  first time. The sync follows. */
  open: { welcome: WelcomeEvent; reconnect: boolean };
  /** A connection ended. `code` is the WebSocket close code (1006 for a
   *  lost connection or a refused handshake, 4000 when the client gave up
   *  on a silent connection); `status` is the HTTP status of a refused
   *  handshake when the WebSocket implementation tells it (ws in Node
   *  does, browsers do not). */
  close: { code: number; reason: string; status?: number | null;
           willReconnect: boolean };
  state: { state: ConnectionState };
  welcome: WelcomeEvent;
  /** The sync after a (re)connect completed: every missed message change
   *  has been emitted, and the outbox is being sent. */
  synced: { cursors: Record<string, number>; reconnect: boolean };
  "message.created": MessageEvent;
  "message.updated": MessageEvent;
  "message.deleted": MessageEvent;
  typing: TypingEvent;
  /** For a user this client watches (see subscribePresence). */
  presence: PresenceEvent;
  /** A subscribePresence was answered, or made again after a reconnect
   *  (`reconnect: true`): the state of every listed user. */
  "presence.subscribed": { presence: Record<string, Presence | null>;
                           reconnect: boolean };
  receipt: ReceiptEvent;
  "conversation.created": ConversationEvent;
  "conversation.updated": ConversationEvent;
  "member.joined": MemberEvent;
  "member.left": MemberEvent;
  /** Errors that belong to no call: a refused token, a failed sync, a
   *  storage failure, an error frame without id, a send from a previous
   *  session (loaded from storage) that the server refused. */
  error: ChatError;
}

/** Why the token function is called. */
export type TokenReason = "connect" | "unauthorized" | "expired" | "refresh" | "rest";

/**
 * A token: a string, or a function returning a fresh one. The function is
 * called at every connect and reconnect ("unauthorized" after a 401
 * handshake, "expired" after a 4001 close: it must not return a cached
 * token then), before the token expires ("refresh", sent with
 * auth.refresh), and for REST calls before the first connect.
 */
export type TokenSource =
  | string
  | ((info: { reason: TokenReason }) => string | Promise<string>);

/**
 * Where cursors and the outbox are kept (values are JSON strings), e.g.
 * `{get: (k) => localStorage.getItem(k), set: (k, v) => localStorage.setItem(k, v)}`.
 * Either method may return a promise. One client per storage prefix: two
 * clients writing the same keys overwrite each other's outbox.
 */
export interface ChatStorage {
  get(key: string): string | null | undefined | Promise<string | null | undefined>;
  set(key: string, value: string): void | Promise<void>;
}

export interface ChatClientOptions {
  /** The WebSocket endpoint, e.g. "wss://example.com/chat/ws" (relative
   *  and http(s) URLs are resolved against the page). */
  url: string;
  /** The REST prefix, e.g. "https://example.com/api/chat/"; needed by
   *  {@link ChatClient.rest} only. */
  apiBase?: string;
  token: TokenSource;
  /** The WebSocket class: default globalThis.WebSocket. In Node 20 pass
   *  the ws package's (`import WebSocket from "ws"`). */
  WebSocket?: any;
  /** Default globalThis.fetch. */
  fetch?: typeof globalThis.fetch;
  /** For {@link ChatClient.upload}: default globalThis.XMLHttpRequest
   *  (browsers); without one, uploads go through fetch, with no progress
   *  until the end. */
  XMLHttpRequest?: any;
  /** Default: in memory, gone with the client. */
  storage?: ChatStorage;
  /** The prefix of the storage keys ("<prefix>.cursors",
   *  "<prefix>.outbox"); default "chat". */
  storagePrefix?: string;
  /** Reconnect delays in ms: attempt n waits a random time in
   *  [0, min(max, min * 2^n)) (full jitter); n restarts at each welcome.
   *  Default {min: 500, max: 30000}. */
  backoff?: { min?: number; max?: number };
  /** ms to wait for the answer to a request (and for the welcome) before
   *  the connection is given up and made again. Default 15000. */
  requestTimeout?: number;
  /** With a token function, refresh the token on the open connection
   *  (auth.refresh) a minute before it expires (halfway for short-lived
   *  tokens), so that the server does not close with 4001. Default true. */
  refreshToken?: boolean;
  /** ms between two {active: true} of one conversation while typing()
   *  is called. Default 3000. */
  typingInterval?: number;
  /** ms without a typing() call after which {active: false} is sent.
   *  Default 5000. */
  typingTimeout?: number;
}

/** An error answer of the server (same codes over WebSocket and REST),
 *  or a failure of the client. */
export class ChatError extends Error {
  constructor(code: string, message?: string,
              extra?: { retryAfterMs?: number | null; status?: number | null });
  readonly name: "ChatError";
  code: ErrorCode | string;
  /** With rate_limited: when to retry, in ms. */
  retryAfterMs: number | null;
  /** The HTTP status, for REST calls and refused handshakes. */
  status: number | null;
}

/** A stored file (POST uploads). `type` is detected from the bytes;
 *  `width`/`height` are an image's, else null. */
export interface Upload {
  id: number;
  size: number;
  type: string;
  name: string | null;
  width: number | null;
  height: number | null;
}

export interface UploadOptions {
  /** The name shown with the file; default the File's name. Only its
   *  base name is kept by the server. */
  name?: string;
  /** Called as the body goes out: bytes sent and the total. */
  onProgress?: (progress: { loaded: number; total: number }) => void;
  /** Aborting it cancels the upload: the promise rejects with
   *  ChatError "cancelled", and the server keeps nothing of it. */
  signal?: AbortSignal;
  /** This call's XMLHttpRequest class (default the client's). */
  XMLHttpRequest?: any;
}

/** message.send fields of a message waiting in the outbox. */
export interface OutboxEntry {
  conversation_id: number;
  body: string;
  client_msg_id: string;
  attachments?: AttachmentInput[];
  reply_to?: number;
}

/**
 * A chat connection that stays up: it reconnects after every close that
 * was not {@link ChatClient.close} (a lost network, 1001 on an nginx
 * reload, 1013 "too slow", 4001 token expired), with exponential backoff
 * and full jitter. After each welcome it sends `sync` with the cursors
 * (again while `complete` is false), emitting the missed message changes
 * like live events, then re-sends the outbox in order. Message events are
 * emitted once per (message id, updated_seq), whether they came live or in
 * a sync.
 *
 * The token goes as the `access_token` query argument (browsers cannot
 * set WebSocket headers), with subprotocol "chat.v1". Pings are answered
 * by the WebSocket implementation; when nothing arrives for a heartbeat,
 * the client sends a `ping` request, so that a dead connection shows.
 *
 * Note: sync replays message changes only. Conversation, member, receipt
 * and presence events missed while away are not replayed: refresh what
 * they describe on "synced" with `reconnect: true`. A conversation without
 * a cursor is synced from its start, so a client with no stored cursors
 * receives the history of every conversation once (pass a persistent
 * storage to avoid it at every page load).
 */
export class ChatClient {
  constructor(options: ChatClientOptions);

  /** The welcome's user, once connected. */
  user: User | null;
  /** The last welcome. */
  welcome: WelcomeEvent | null;
  /** The state of the connection. */
  readonly state: ConnectionState;
  /**
   * A copy of the cursors: for each conversation id (a string key), the
   * largest seq or updated_seq seen, from message events (applied when a
   * sync completes) and history answers. They only grow, and are saved in
   * the storage.
   */
  readonly cursors: Record<string, number>;
  /** The messages not acknowledged yet, oldest first. */
  readonly outbox: OutboxEntry[];

  /** Adds a handler; returns a function that removes it. A handler that
   *  throws is reported (reportError, or an uncaught exception in Node),
   *  not swallowed, and does not disturb the client. */
  on<K extends keyof ChatEventMap>(type: K, handler: (ev: ChatEventMap[K]) => void): () => void;
  on(type: string, handler: (ev: any) => void): () => void;
  off<K extends keyof ChatEventMap>(type: K, handler: (ev: ChatEventMap[K]) => void): void;
  off(type: string, handler: (ev: any) => void): void;

  /**
   * Connects (and keeps reconnecting); resolves at the first welcome.
   * Rejects only if close() is called first, or on a failure no retry can
   * mend: a fixed (string) token refused, by a 401 handshake (where the
   * WebSocket implementation reports the status: ws does, browsers do
   * not, and keep retrying) or a 4001 close; no WebSocket class.
   */
  connect(): Promise<WelcomeEvent>;

  /** Closes; no reconnect after this. Requests waiting for an answer
   *  reject with "unavailable"; sends stay in the outbox (and the storage)
   *  with their promises pending, and go out at the next connect(). */
  close(): void;

  /**
   * Any request: `{type, id, ...fields}`. Resolves with the `data` of the
   * `ok` answer; rejects with a ChatError: the server's error, or
   * "unavailable" when the connection drops first or there is none (while
   * reconnecting the request waits up to `requestTimeout` for the
   * connection), or "timeout".
   */
  request<T = any>(type: string, fields?: Record<string, unknown>): Promise<T>;

  /**
   * Sends a message; resolves with the stored message. It is kept in the
   * outbox (and the storage) until the server acknowledges it: re-sent with
   * the same client_msg_id after a reconnect (the server stores it once and
   * delivers it once), retried after the backoff on "unavailable". Other
   * errors reject and drop it. clientMsgId defaults to a random UUID;
   * sending an id that is already in the outbox returns the same promise.
   * Also ends this conversation's typing.
   *
   * attachments: uploads of this user ({@link ChatClient.upload}'s ids),
   * e.g. `[{ upload_id: photo.id, thumbnail_id: thumb.id },
   * { upload_id: pdf.id }]`; the stored message describes each from the
   * upload ({@link UploadAttachment}). Another user's upload, or an unknown
   * id, rejects with "not_found" naming the item ("attachments[1]: upload
   * not found").
   */
  send(conversationId: number, body: string,
       options?: { attachments?: AttachmentInput[]; replyTo?: number;
                   clientMsgId?: string }): Promise<Message>;

  /** Removes a message from the outbox; its send() rejects with
   *  "cancelled". It may have reached the server already. Returns whether
   *  it was there. */
  cancel(clientMsgId: string): boolean;

  /** message.edit (sender only). */
  edit(messageId: number, body: string): Promise<Message>;
  /** message.delete: a soft delete. */
  remove(messageId: number): Promise<Message>;
  /** message.read: marks the conversation read up to seq. */
  markRead(conversationId: number, seq: number):
    Promise<{ last_read_seq: number; unread_count: number }>;
  /** messages.history (the newest `limit` by default, 50); the answer moves
   *  the cursor. */
  history(conversationId: number,
          options?: { beforeSeq?: number; afterSeq?: number; limit?: number }):
    Promise<{ messages: Message[]; has_more: boolean }>;
  /** conversation.list: `next` is the `before` of the next page. */
  conversations(options?: { limit?: number; before?: unknown; archived?: boolean }):
    Promise<{ conversations: Conversation[]; next: unknown | null }>;
  /** conversation.members: a page of the members (limit 1..200, 100 by
   *  default), in the order of Conversation.members; `next` is the `after`
   *  of the next page, null on the last. */
  members(conversationId: number, options?: { after?: string; limit?: number }):
    Promise<{ members: Member[]; next: string | null }>;
  /** conversation.create: a direct one with userId (the existing one if
   *  any), or a group with title and members. */
  createConversation(options: { kind: "direct" | "group"; userId?: string;
                                title?: string; members?: string[];
                                ref?: string; metadata?: Record<string, unknown> }):
    Promise<Conversation>;
  /** presence.query (at most 200 ids). */
  presence(userIds: Iterable<string>): Promise<Record<string, Presence | null>>;
  /** presence.subscribe: the users whose "presence" events this client
   *  gets (at most 200, duplicates removed). Replaces the last list
   *  (direct partners, the server's default, stay only if listed) and is
   *  sent again after every reconnect ("presence.subscribed" then tells
   *  their state). Resolves with their presence, null for ids the server
   *  will not tell (strangers, blocked): those are not watched. */
  subscribePresence(userIds: Iterable<string>): Promise<Record<string, Presence | null>>;
  /** presence.count: how many members of a conversation of the user are
   *  online now (the user too); asked for, never pushed. */
  presenceCount(conversationId: number): Promise<PresenceCount>;

  /** Call at every keystroke: sends {active: true} at most once per
   *  `typingInterval` (3 s) per conversation, and {active: false} after
   *  `typingTimeout` (5 s) without a call. Nothing is sent while
   *  disconnected. */
  typing(conversationId: number): void;
  /** Sends {active: false} now if {active: true} was sent. */
  stopTyping(conversationId: number): void;

  /**
   * A REST call under apiBase with the current token (Authorization:
   * Bearer), JSON in and out: resolves with the answer's body (`{}` when
   * empty); rejects with a ChatError carrying the error body's code and
   * message and the HTTP status ("unavailable" on a network failure). With
   * a token function, a 401 is retried once with a fresh token.
   * Example: `await chat.rest("POST", "conversations/45/read", {seq: 17})`.
   */
  rest<T = any>(method: string, path: string, body?: unknown): Promise<T>;

  /**
   * Uploads a file (POST uploads under apiBase, the body as it is) with
   * progress and cancel; resolves with the Upload, rejects with a
   * ChatError (too_large 413, rate_limited 429 with retryAfterMs,
   * insufficient_storage 507, unavailable, cancelled). With a token
   * function, a 401 is retried once with a fresh token (the file is sent
   * again).
   * Example: `const up = await chat.upload(input.files[0],
   *   {onProgress: ({loaded, total}) => bar.value = loaded / total})`.
   */
  upload(file: Blob | ArrayBuffer | ArrayBufferView,
         options?: UploadOptions): Promise<Upload>;

  /**
   * Downloads a file (an {@link UploadAttachment}'s `url` or its
   * thumbnail's) with the Authorization header, as a Blob; rejects with
   * a ChatError (not_found, cancelled, unavailable). With a token
   * function, a 401 is retried once with a fresh token. For a page that
   * keeps its token out of cookies: show it through
   * `URL.createObjectURL(blob)`.
   */
  fetchFile(url: string, options?: { signal?: AbortSignal | null }): Promise<Blob>;
}

export default ChatClient;

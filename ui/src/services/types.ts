// The one typed interface between the UI and the back end (docs/APP_API.md).
// Two implementations mean the same thing: http.ts (browser, `cortex serve`) and tauri.ts (desktop).

export type Id = string;
/** Unix milliseconds. */
export type Millis = number;

export interface ErrorBody {
  code: string;
  message: string;
  details?: Record<string, unknown> | null;
}

// ---- System & settings ----------------------------------------------------------------------

export interface SystemInfo {
  version: string;
  memory_bytes: number;
  device: 'cpu' | 'gpu';
  default_model_id: Id | null;
  models_dir: string;
  hf_endpoint: string | null;
  has_hf_token: boolean;
  /** A server others can reach: no downloads, imports, conversions or settings changes, and
   * no host paths in answers (they read `…/name`). Absent in the desktop app. */
  library_only?: boolean;
}

export type Theme = 'system' | 'light' | 'dark';

export interface Settings {
  models_dir: string;
  hf_endpoint: string | null;
  kv_memory_mb: number | null;
  theme: Theme;
  has_hf_token: boolean;
  hf_token_storage: 'keychain' | 'file' | null;
}

/** Any subset; `hf_token` is write-only (`null` removes the stored token). */
export interface SettingsUpdate {
  models_dir?: string;
  hf_endpoint?: string | null;
  kv_memory_mb?: number | null;
  theme?: Theme;
  hf_token?: string | null;
}

// ---- Library ------------------------------------------------------------------------------

export interface ModelSettings {
  system_prompt: string | null;
  temperature: number | null;
  top_p: number | null;
  top_k: number | null;
  max_tokens: number | null;
  context_length: number | null;
}

export type ModelSource =
  | { kind: 'hub'; repo: string; revision: string }
  | { kind: 'gguf'; file: string }
  | { kind: 'folder'; path: string }
  | { kind: 'converted'; from_model_id: Id; repo?: string }
  | { kind: 'default' };

export interface Quantization {
  bits: number;
  group_size: number;
}

export interface LocalModel {
  id: Id;
  name: string;
  path: string;
  source: ModelSource;
  format: 'mlx' | 'safetensors';
  architecture: string | null;
  parameters: number | null;
  quantization: Quantization | null;
  dtype: string | null;
  size_bytes: number;
  added_at: Millis;
  last_used_at: Millis | null;
  loaded: boolean;
  settings: ModelSettings;
}

export interface ModelList {
  models: LocalModel[];
  total_size_bytes: number;
}

export interface ModelUpdate {
  name?: string;
  settings?: Partial<ModelSettings>;
}

export interface ImportRequest {
  path: string;
  name?: string;
}

// ---- Discover -----------------------------------------------------------------------------

export type HubSort = 'downloads' | 'likes' | 'trending' | 'updated';

export interface HubSearchQuery {
  q: string;
  mlx_only?: boolean;
  sort?: HubSort;
  limit?: number;
  min_params?: number | null;
  max_params?: number | null;
}

export interface HubSearchResult {
  id: string;
  author: string;
  downloads: number;
  likes: number;
  last_modified: string | Millis | null;
  parameters: number | null;
  tags: string[];
  pipeline_tag: string | null;
  mlx: boolean;
}

export interface HubModelQuery {
  id: string;
  revision?: string;
  context?: number;
}

export type Verdict = 'fits' | 'tight' | 'too_big';

export interface HubVariant {
  name: string;
  include: string[];
  size: number;
  quantization: string | null;
}

export interface HubModel {
  id: string;
  revision: string;
  sha: string;
  gated: false | 'auto' | 'manual';
  license: string | null;
  card: string;
  architecture: string | null;
  supported: boolean;
  parameters: number | null;
  files: { path: string; size: number }[];
  total_size: number;
  variants: HubVariant[];
  memory: {
    weights_bytes: number;
    kv_bytes: number;
    total_bytes: number;
    machine_bytes: number;
    context: number;
    verdict: Verdict;
  };
}

// ---- Downloads ----------------------------------------------------------------------------

export type DownloadState =
  | 'queued'
  | 'running'
  | 'paused'
  | 'retrying'
  | 'verifying'
  | 'completed'
  | 'failed'
  | 'cancelled';

export interface DownloadFile {
  path: string;
  size: number;
  done: number;
}

export interface Download {
  id: Id;
  repo: string;
  revision: string;
  include: string[] | null;
  state: DownloadState;
  total_bytes: number;
  done_bytes: number;
  speed_bps: number;
  eta_s: number | null;
  files: DownloadFile[];
  error: ErrorBody | null;
  model_id: Id | null;
  created_at: Millis;
  updated_at: Millis;
}

export interface DownloadRequest {
  repo: string;
  revision?: string;
  include?: string[];
}

export type DownloadAction = 'pause' | 'resume' | 'cancel' | 'retry';

// ---- Convert ------------------------------------------------------------------------------

export type Dtype = 'float16' | 'bfloat16' | 'float32';

export interface ConvertOptions {
  model_id: Id;
  bits: null | 2 | 3 | 4 | 5 | 6 | 8;
  group_size: 32 | 64 | 128;
  dtype: Dtype | null;
}

export interface ConvertRequest extends ConvertOptions {
  name?: string;
}

export interface ConvertEstimate {
  output_bytes: number;
  source_bytes: number;
}

export interface Conversion {
  id: Id;
  model_id: Id;
  name: string;
  bits: number | null;
  group_size: number;
  dtype: Dtype | null;
  state: 'running' | 'completed' | 'failed' | 'cancelled';
  done_tensors: number;
  total_tensors: number;
  done_bytes: number;
  total_bytes: number;
  estimated_output_bytes: number;
  result_model_id: Id | null;
  error: ErrorBody | null;
  created_at: Millis;
  updated_at: Millis;
}

// ---- Conversations ------------------------------------------------------------------------

export interface Conversation {
  id: Id;
  title: string;
  model_id: Id | null;
  system_prompt: string | null;
  settings: ModelSettings;
  current_leaf_id: Id | null;
  created_at: Millis;
  updated_at: Millis;
}

export type FinishReason = 'stop' | 'length' | 'cancelled' | 'error';

export interface MessageStats {
  prompt_tokens: number;
  completion_tokens: number;
  cached_tokens: number;
  ttft_ms: number;
  tokens_per_s: number;
  finish_reason: FinishReason;
}

export interface Message {
  id: Id;
  parent_id: Id | null;
  role: 'user' | 'assistant' | 'system';
  content: string;
  created_at: Millis;
  model_id: Id | null;
  stats: MessageStats | null;
  error: { code: string; message: string } | null;
}

export interface ConversationWithMessages {
  conversation: Conversation;
  messages: Message[];
}

export interface ConversationCreate {
  model_id?: Id | null;
  title?: string;
  system_prompt?: string | null;
}

export interface ConversationUpdate {
  title?: string;
  model_id?: Id | null;
  system_prompt?: string | null;
  settings?: Partial<ModelSettings>;
  current_leaf_id?: Id | null;
}

export interface SendMessageRequest {
  parent_id: Id | null;
  content: string;
}

export interface RegenerateRequest {
  /** An assistant message (a sibling is generated), or a user message (its reply is retried). */
  message_id: Id;
}

export type ReplyEvent =
  | { type: 'user_message'; message: Message }
  | { type: 'assistant_started'; message: Message }
  | { type: 'delta'; text: string }
  | { type: 'done'; message: Message }
  | { type: 'error'; error: ErrorBody; message: Message | null };

export interface StreamOptions {
  onEvent: (event: ReplyEvent) => void;
  /** Aborting stops the reply (the server saves it with finish_reason "cancelled"). */
  signal?: AbortSignal;
}

// ---- Events -------------------------------------------------------------------------------

export type AppEvent =
  | { type: 'download'; download: Download }
  | { type: 'conversion'; conversion: Conversion }
  | { type: 'models_changed' };

export type ConnectionState = 'connecting' | 'open' | 'reconnecting';

export interface EventHandlers {
  onEvent: (event: AppEvent) => void;
  /** Connection changes; after a reconnect, stores refetch what they may have missed. */
  onState?: (state: ConnectionState) => void;
}

export type Unsubscribe = () => void;

// ---- The service --------------------------------------------------------------------------

export interface AppService {
  getSystem(): Promise<SystemInfo>;

  getSettings(): Promise<Settings>;
  updateSettings(update: SettingsUpdate): Promise<Settings>;

  listModels(): Promise<ModelList>;
  getModel(id: Id): Promise<LocalModel>;
  updateModel(id: Id, update: ModelUpdate): Promise<LocalModel>;
  deleteModel(id: Id): Promise<{ freed_bytes: number }>;
  loadModel(id: Id): Promise<LocalModel>;
  unloadModel(id: Id): Promise<LocalModel>;
  importModel(request: ImportRequest): Promise<LocalModel>;

  searchHub(query: HubSearchQuery): Promise<{ results: HubSearchResult[] }>;
  getHubModel(query: HubModelQuery): Promise<HubModel>;

  startDownload(request: DownloadRequest): Promise<Download>;
  listDownloads(): Promise<{ downloads: Download[] }>;
  pauseDownload(id: Id): Promise<Download>;
  resumeDownload(id: Id): Promise<Download>;
  cancelDownload(id: Id): Promise<Download>;
  retryDownload(id: Id): Promise<Download>;
  forgetDownload(id: Id): Promise<void>;

  estimateConversion(options: ConvertOptions): Promise<ConvertEstimate>;
  startConversion(request: ConvertRequest): Promise<Conversion>;
  listConversions(): Promise<{ conversions: Conversion[] }>;
  cancelConversion(id: Id): Promise<void>;

  listConversations(q?: string): Promise<{ conversations: Conversation[] }>;
  createConversation(request: ConversationCreate): Promise<Conversation>;
  getConversation(id: Id): Promise<ConversationWithMessages>;
  updateConversation(id: Id, update: ConversationUpdate): Promise<Conversation>;
  deleteConversation(id: Id): Promise<void>;
  /** Streams the reply; resolves when the stream ends. Rejects with AppError (code "cancelled" on abort). */
  sendMessage(conversationId: Id, request: SendMessageRequest, options: StreamOptions): Promise<void>;
  regenerate(conversationId: Id, request: RegenerateRequest, options: StreamOptions): Promise<void>;
  stopReply(conversationId: Id): Promise<void>;

  /** One subscription to the back end's events (progress of long work). */
  subscribe(handlers: EventHandlers): Unsubscribe;
}

/** The desktop app's local OpenAI-compatible server (Settings > Local API server). */
export interface ApiServerStatus {
  enabled: boolean;
  port: number;
  /** Listening on every interface, not only 127.0.0.1 (then an API key is required). */
  allow_lan: boolean;
  api_key: string | null;
  running: boolean;
  /** Where clients connect, e.g. "http://127.0.0.1:8080/v1"; null when stopped. */
  url: string | null;
}

export interface ApiServerUpdate {
  enabled?: boolean;
  port?: number;
  allow_lan?: boolean;
  /** null removes the key (refused while listening on the network). */
  api_key?: string | null;
}

/** What only the desktop shell offers (platform.name === 'desktop'). */
export interface DesktopService {
  getApiServer(): Promise<ApiServerStatus>;
  setApiServer(update: ApiServerUpdate): Promise<ApiServerStatus>;
  /** Opens an http(s) link in the system browser. */
  openLink(url: string): Promise<void>;
}

/** The operation names; the Tauri commands are the same names in snake_case. */
export type Operation = keyof AppService | keyof DesktopService;

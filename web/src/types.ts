// JSON shapes of the control plane's /api/v1 (control-plane/src/dto.rs and
// control-plane/src/http/*.rs). Only the fields the dashboard reads.

export type Role = 'admin' | 'operator' | 'viewer';

export interface Scope {
  regions: string[];
  service_prefixes: string[];
}

/** The signed-in principal, normalised from POST and GET /api/v1/session. */
export interface Session {
  name: string;
  kind: 'user' | 'token';
  role: Role;
  scope: Scope;
  csrfToken: string;
  expiresAtMs?: number;
}

export interface Disk {
  mount_point: string;
  device: string;
  filesystem: string;
  total_bytes: number;
  available_bytes: number;
}

export interface Inventory {
  hostname: string;
  os: string;
  os_version: string;
  kernel: string;
  arch: string;
  cpu_count: number;
  cpu_model: string;
  memory_bytes: number;
  swap_bytes: number;
  disks: Disk[];
  agent_version: string;
  docker_available: boolean;
  docker_version: string;
  docker_error: string;
  /** Where other hosts reach this host's ingress and route ports ('' before the agent reports it). */
  advertise_address?: string;
  /** The ingress ports; 0 when that listener is off. */
  ingress_http_port?: number;
  ingress_https_port?: number;
}

export interface DiskUsage {
  mount_point: string;
  used_bytes: number;
  total_bytes: number;
}

export interface Sample {
  timestamp_ms: number;
  cpu_percent: number;
  load1: number;
  load5: number;
  load15: number;
  memory_used_bytes: number;
  memory_available_bytes: number;
  memory_total_bytes: number;
  swap_used_bytes: number;
  swap_total_bytes: number;
  disks: DiskUsage[];
  net_rx_bytes_per_second: number;
  net_tx_bytes_per_second: number;
  uptime_seconds: number;
  process_count: number;
}

export interface Host {
  id: string;
  hostname: string;
  region: string;
  labels: Record<string, string>;
  status: string; // online | offline | revoked | unknown
  last_seen_ms: number;
  enrolled_at_ms: number;
  interval_seconds: number;
  certificate_not_after_ms: number;
  runtime_error: string;
  inventory: Inventory | null;
  latest: Sample | null;
}

export interface MetricPoint {
  timestamp_ms: number;
  avg: number;
  max: number;
}

export interface Metrics {
  host_id: string;
  metric: string;
  unit: string;
  step_ms: number;
  points: MetricPoint[];
}

/** One SSE `point` event of /api/v1/hosts/{id}/metrics/live. */
export interface LivePoint extends MetricPoint {
  metric: string;
}

export interface Deployment {
  id: string;
  service: string;
  from_revision: number;
  to_revision: number;
  strategy: string;
  phase: string;
  finished: boolean;
  replicas: number;
  new_healthy: number;
  new_total: number;
  old_total: number;
  created_at_ms: number;
  updated_at_ms: number;
  created_by: string;
}

export interface Allocation {
  id: string;
  revision: number;
  host_id: string;
  state: string;
  health: string;
  stopping: boolean;
  message: string;
  restarts: number;
  oom_killed: boolean;
  container_id: string;
}

export interface ServiceEvent {
  seq: number;
  at_ms: number;
  deployment_id: string;
  message: string;
}

export interface Service {
  name: string;
  current_revision: number;
  stable_revision: number;
  replicas: number;
  running: number;
  healthy: number;
  active_deployment_id: string;
  stopped: boolean;
  history: ServiceEvent[];
  allocations: Allocation[];
}

export interface Revision {
  service: string;
  number: number;
  id: string;
  created_at_ms: number;
  created_by: string;
  format: string;
  spec: string;
  secret_versions: Record<string, number>;
}

export interface ApplyResult {
  service: string;
  revision: number;
  created: boolean;
  deployment: Deployment | null;
  warnings: string[];
  defaults_applied: string[];
}

export interface AuditRecord {
  seq: number;
  at_ms: number;
  actor: string;
  source: string;
  action: string;
  target: string;
  outcome: string;
  prev_hash: string;
  hash: string;
}

export interface AuditVerification {
  ok: boolean;
  records: number;
  head_seq: number;
  head_hash: string;
  problems: string[];
}

export interface Alert {
  id: string;
  fingerprint: string;
  alertname: string;
  severity: string;
  state: string;
  labels: Record<string, string>;
  summary: string;
  condition: string;
  value: number;
  started_at_ms: number;
  firing_since_ms: number | null;
  resolved_at_ms: number | null;
  acknowledged: { at_ms: number; by: string; comment: string } | null;
}

export interface Silence {
  id: string;
  matchers: string[];
  starts_at_ms: number;
  ends_at_ms: number;
  comment: string;
  created_by: string;
  active: boolean;
  expired_by: string | null;
}

export interface SecretInfo {
  name: string;
  latest_version: number;
  versions_kept: number;
  created_at_ms: number;
  created_by: string;
  updated_at_ms: number;
  updated_by: string;
}

export interface SecretVersion {
  version: number;
  created_at_ms: number;
  created_by: string;
  master_key_id: string;
}

export interface PolicyInfo {
  name: string;
  hook: string;
  version: number;
  sha256: string;
  size_bytes: number;
  config: unknown;
  enabled: boolean;
  created_at_ms: number;
  created_by: string;
  updated_at_ms: number;
  updated_by: string;
}

export interface PolicyTestResult {
  policy: string;
  hook: string;
  version: number;
  decision: string;
  reasons: string[];
  warnings: string[];
  defaults: unknown;
  elapsed_us: number;
}

export interface BackupPolicyStatus {
  state: string; // ok | overdue | failing | unverified | never
  reason: string;
  last_success_at_ms: number;
  age_seconds: number;
  last_failure_at_ms: number;
  last_error: string;
  last_verified_at_ms: number;
  last_verify: string;
  measured_rto_ms: number;
  next_run_at_ms: number;
  next_verify_at_ms: number;
}

export interface BackupPolicy {
  name: string;
  source_kind: string;
  host_id: string;
  schedule: string;
  verify_schedule: string;
  rpo_seconds: number;
  destinations: string[];
  created_at_ms: number;
  updated_at_ms: number;
  updated_by: string;
  status: BackupPolicyStatus | null;
  spec: string;
}

export interface BackupManifest {
  source_kind: string;
  raw_bytes: number;
  compressed_bytes: number;
  artifact_bytes: number;
  sha256: string;
  total_ms: number;
}

export interface Backup {
  id: string;
  policy: string;
  host_id: string;
  state: string; // running | ok | failed | pruned
  trigger: string;
  started_at_ms: number;
  finished_at_ms: number;
  error: string;
  manifest: BackupManifest | null;
  verify_state: string; // not-verified | ok | failed
  verified_at_ms: number;
  verify_error: string;
  restore_ms: number;
  created_by: string;
}

export interface BackupJob {
  id: string;
  kind: string; // backup | verify | restore | prune
  policy: string;
  backup_id: string;
  host_id: string;
  state: string; // pending | running | ok | failed
  trigger: string;
  created_at_ms: number;
  finished_at_ms: number;
  error: string;
  stage: string;
  bytes: number;
  total_bytes: number;
  restore_ms: number;
  duration_ms: number;
  created_by: string;
}

export interface User {
  name: string;
  role: string;
  scope: Scope;
  created_at_ms: number;
  created_by: string;
  updated_at_ms: number;
  password_changed_at_ms: number;
}

export interface ApiToken {
  id: string;
  name: string;
  role: string;
  created_at_ms: number;
  expires_at_ms: number;
  revoked: boolean;
  created_by: string;
  last_used_ms: number;
  scope: Scope | null;
  user?: string;
}

export interface JoinToken {
  id: string;
  region: string;
  labels: Record<string, string>;
  created_at_ms: number;
  expires_at_ms: number;
  max_uses: number;
  uses: number;
  revoked: boolean;
  created_by: string;
}

/** One routed service of GET /api/v1/routes. */
export interface RouteSummary {
  service: string;
  hostnames: string[];
  paths: string[];
  /** `nearest`, `primary eu-west, failover us-east` or `weights eu-west=3 us-east=1`. */
  regions: string;
  serving: string[];
  /** Regions whose ingresses answer 503 for this service. */
  not_serving: string[];
}

/** A measured round trip between two regions. */
export interface RegionLatency {
  from_region: string;
  to_region: string;
  rtt_ms: number;
}

/** GET /api/v1/routes. */
export interface RoutesList {
  routes: RouteSummary[];
  latencies: RegionLatency[];
}

/** One backend of a region's route; weight 0 is a draining allocation or a standby. */
export interface RouteBackend {
  allocation: string;
  host: string;
  region: string;
  revision: number;
  address: string;
  weight_ppm: number;
  weight_percent: number;
  /** Weight 0, used only when no weighted backend answers (a failover region's allocation); absent from older control planes. */
  standby?: boolean;
}

/** Where one region's ingresses send a service's requests, and why. */
export interface RegionRoutes {
  region: string;
  /** False: that region's ingresses answer 503. */
  serving: boolean;
  explanation: string;
  backends: RouteBackend[];
}

/** What the ingresses measured for one revision over the last five minutes. */
export interface RevisionTraffic {
  revision: number;
  requests: number;
  errors: number;
  p50_ms: number;
  p99_ms: number;
}

/** GET /api/v1/routes/{service}. */
export interface ServiceRoutes {
  service: string;
  hostnames: string[];
  paths: string[];
  regions: string;
  /** `none`, `self-signed` or `secret web/tls@3`. */
  tls: string;
  by_region: RegionRoutes[];
  traffic: RevisionTraffic[];
}

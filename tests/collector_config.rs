//! The OpenTelemetry Collector configurations shipped with the crate, checked without a collector:
//! every command the files' opening comments give, with its files merged the way
//! `otelcol-contrib --config otel-collector.yaml --config collector/x.yaml [--config ...]` merges
//! them (maps merge key by key, lists and scalars are replaced): `otel-collector.yaml` alone, with
//! each overlay of `collector/` (every `*.yaml` there must give the command that runs it, so that a
//! new overlay is covered as soon as it is added), and the fleet's sampling tier stacked on each
//! backend overlay.
//!
//! Checked: what the Collector rejects at startup (an option a component's config struct does not
//! have, at any depth the files use, see the tables below; a component used but not defined, a
//! component in a pipeline of a signal it does not support, a connector without both ends, an
//! authenticator or storage extension that is not enabled), what each component's README requires
//! of its settings (required settings, the values a setting takes, which signals a loadbalancing
//! `routing_key` routes) and this project's rules (memory_limiter first and batch last, no literal
//! secret, listeners on localhost only by default, only well formed `${env:...}` references,
//! persistent queues where the exporter has one, connectors counting requests before any
//! sampling, each file saying how to run it and which variables it reads).
//!
//! No Collector runs here: that the files are valid for otelcol-contrib v0.135 rests on these
//! tables being those of v0.135's config structs (read as the tables say).
//!
//! Every check also runs against broken configs in the `checker_*` tests at the bottom, so each is
//! known to be able to fail.

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
};

use serde_yaml_ng::Value;

const TRACES: &str = "traces";
const METRICS: &str = "metrics";
const LOGS: &str = "logs";
const SIGNALS: &[&str] = &[TRACES, METRICS, LOGS];

const BASE_FILE: &str = "otel-collector.yaml";
const OVERLAY_DIR: &str = "collector";

// ---------------------------------------------------------------------------------------------
// What each component type supports, and the options it takes.
//
// Signals: as each component's README status table says. Options: the `mapstructure` keys of the
// component's config struct, with the structs it squashes in, read where noted:
// - core components and the shared config structs (confighttp, configgrpc, configtls,
//   configauth, confignet, configretry, exporterhelper's queue): opentelemetry-collector at tag
//   v0.135.0, the oldest release the README supports (files named at each table);
// - contrib components: the opentelemetry-collector-contrib repository is too large to fetch
//   here, so its v0.135.0 tag could not be read. Their keys come from the config structs and the
//   generated `config.schema.yaml` of newer contrib versions (commits named at each table); every
//   key the shipped configs use is also in a contrib version older than v0.135 (noted where so),
//   so it is in v0.135 too. A key added after v0.135 would pass this test and fail v0.135: use
//   only keys the tables below mark as used, or check the key at the v0.135.0 tag.
//
// A type missing here fails the checks: add it with what its README and config struct list.
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Receiver,
    Processor,
    Exporter,
    Connector,
    Extension,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Receiver => "receiver",
            Kind::Processor => "processor",
            Kind::Exporter => "exporter",
            Kind::Connector => "connector",
            Kind::Extension => "extension",
        }
    }

    /// The section of the config where components of this kind are defined.
    fn section(self) -> &'static str {
        match self {
            Kind::Receiver => "receivers",
            Kind::Processor => "processors",
            Kind::Exporter => "exporters",
            Kind::Connector => "connectors",
            Kind::Extension => "extensions",
        }
    }

    const ALL: [Kind; 5] = [
        Kind::Receiver,
        Kind::Processor,
        Kind::Exporter,
        Kind::Connector,
        Kind::Extension,
    ];
}

/// What an option takes, as far as this test checks it.
#[derive(Clone, Copy, Debug)]
enum Opt {
    /// A value: a scalar, or a list of scalars.
    Value,
    /// A map with these keys only (the union of the groups): any other key is refused, as the
    /// Collector refuses it.
    Map(Options),
    /// A list of items, each checked with this.
    ListOf(&'static Opt),
    /// A map whose keys are the user's (headers, tags).
    FreeMap,
    /// A nested struct the shipped configs do not use: its keys are not checked.
    Unchecked,
}

/// Option keys and what each takes: one struct's.
type Keys = &'static [(&'static str, Opt)];
/// The keys of a struct and of the structs it squashes in.
type Options = &'static [Keys];

const V: Opt = Opt::Value;
const U: Opt = Opt::Unchecked;

// opentelemetry-collector v0.135.0, config/configtls/configtls.go: `Config`, squashed into
// `ClientConfig` and `ServerConfig`.
const TLS_COMMON: Keys = &[
    ("ca_file", V),
    ("ca_pem", V),
    ("include_system_ca_certs_pool", V),
    ("cert_file", V),
    ("cert_pem", V),
    ("key_file", V),
    ("key_pem", V),
    ("min_version", V),
    ("max_version", V),
    ("cipher_suites", V),
    ("reload_interval", V),
    ("curve_preferences", V),
    ("tpm", U),
];
const TLS_CLIENT: Options = &[
    TLS_COMMON,
    &[
        ("insecure", V),
        ("insecure_skip_verify", V),
        ("server_name_override", V),
    ],
];
const TLS_SERVER: Options = &[
    TLS_COMMON,
    &[("client_ca_file", V), ("client_ca_file_reload", V)],
];

// v0.135.0 config/configauth/configauth.go `Config`; config/confighttp/server.go `AuthConfig`.
const AUTH_CLIENT: Keys = &[("authenticator", V)];
const AUTH_HTTP_SERVER: Keys = &[("authenticator", V), ("request_params", V)];

// v0.135.0 config/confighttp/client.go: `ClientConfig`.
const HTTP_CLIENT: Keys = &[
    ("endpoint", V),
    ("proxy_url", V),
    ("tls", Opt::Map(TLS_CLIENT)),
    ("read_buffer_size", V),
    ("write_buffer_size", V),
    ("timeout", V),
    ("headers", Opt::FreeMap),
    ("auth", Opt::Map(&[AUTH_CLIENT])),
    ("compression", V),
    ("compression_params", U),
    ("max_idle_conns", V),
    ("max_idle_conns_per_host", V),
    ("max_conns_per_host", V),
    ("idle_conn_timeout", V),
    ("disable_keep_alives", V),
    ("http2_read_idle_timeout", V),
    ("http2_ping_timeout", V),
    ("cookies", U),
    ("force_attempt_http2", V),
    ("middlewares", U),
];

// v0.135.0 config/confighttp/server.go: `ServerConfig`.
const HTTP_SERVER: Keys = &[
    ("endpoint", V),
    ("tls", Opt::Map(TLS_SERVER)),
    ("cors", U),
    ("auth", Opt::Map(&[AUTH_HTTP_SERVER])),
    ("max_request_body_size", V),
    ("include_metadata", V),
    ("response_headers", Opt::FreeMap),
    ("compression_algorithms", V),
    ("read_timeout", V),
    ("read_header_timeout", V),
    ("write_timeout", V),
    ("idle_timeout", V),
    ("middlewares", U),
];

// v0.135.0 config/configgrpc/configgrpc.go: `ClientConfig`.
const GRPC_CLIENT: Keys = &[
    ("endpoint", V),
    ("compression", V),
    ("tls", Opt::Map(TLS_CLIENT)),
    ("keepalive", U),
    ("read_buffer_size", V),
    ("write_buffer_size", V),
    ("wait_for_ready", V),
    ("headers", Opt::FreeMap),
    ("balancer_name", V),
    ("authority", V),
    ("auth", Opt::Map(&[AUTH_CLIENT])),
    ("middlewares", U),
];

// v0.135.0 config/configgrpc/configgrpc.go `ServerConfig`, with config/confignet/confignet.go
// `AddrConfig` squashed in.
const GRPC_SERVER: Keys = &[
    ("endpoint", V),
    ("transport", V),
    ("dialer", U),
    ("tls", Opt::Map(TLS_SERVER)),
    ("max_recv_msg_size_mib", V),
    ("max_concurrent_streams", V),
    ("read_buffer_size", V),
    ("write_buffer_size", V),
    ("keepalive", U),
    ("auth", Opt::Map(&[AUTH_CLIENT])),
    ("include_metadata", V),
    ("middlewares", U),
];

// v0.135.0 exporter/exporterhelper/internal/queuebatch/config.go: `Config` (`sending_queue`).
const SENDING_QUEUE: Keys = &[
    ("enabled", V),
    ("wait_for_result", V),
    ("sizer", V),
    ("queue_size", V),
    ("block_on_overflow", V),
    ("storage", V),
    ("num_consumers", V),
    ("batch", U),
];

// v0.135.0 exporter/exporterhelper/internal/timeout_sender.go `TimeoutConfig` (`timeout`,
// squashed), config/configretry/backoff.go `BackOffConfig` (`retry_on_failure`), and the queue.
const EXPORTER_HELPER: Keys = &[
    ("timeout", V),
    ("retry_on_failure", U),
    ("sending_queue", Opt::Map(&[SENDING_QUEUE])),
];

// v0.135.0 receiver/otlpreceiver/config.go: `Config`, `Protocols`, `HTTPConfig`.
const OTLP_HTTP_PROTOCOL: Options = &[
    HTTP_SERVER,
    &[
        ("traces_url_path", V),
        ("metrics_url_path", V),
        ("logs_url_path", V),
    ],
];
const OTLP_RECEIVER: Keys = &[(
    "protocols",
    Opt::Map(&[&[
        ("grpc", Opt::Map(&[GRPC_SERVER])),
        ("http", Opt::Map(OTLP_HTTP_PROTOCOL)),
    ]]),
)];

// v0.135.0 internal/memorylimiter/config.go (processor/memorylimiterprocessor/config.go aliases it).
const MEMORY_LIMITER: Keys = &[
    ("check_interval", V),
    ("min_gc_interval_when_soft_limited", V),
    ("min_gc_interval_when_hard_limited", V),
    ("limit_mib", V),
    ("spike_limit_mib", V),
    ("limit_percentage", V),
    ("spike_limit_percentage", V),
];

// v0.135.0 processor/batchprocessor/config.go.
const BATCH: Keys = &[
    ("timeout", V),
    ("send_batch_size", V),
    ("send_batch_max_size", V),
    ("metadata_keys", V),
    ("metadata_cardinality_limit", V),
];

// v0.135.0 exporter/debugexporter/config.go: no sending_queue at v0.135.0.
const DEBUG: Keys = &[
    ("verbosity", V),
    ("sampling_initial", V),
    ("sampling_thereafter", V),
    ("use_internal_logger", V),
];

// v0.135.0 exporter/otlpexporter/config.go: the helper's options and configgrpc's client.
const OTLP_EXPORTER: Options = &[EXPORTER_HELPER, GRPC_CLIENT];

// v0.135.0 exporter/otlphttpexporter/config.go: confighttp's client, queue, retry, endpoints.
const OTLP_HTTP_EXPORTER: Options = &[
    HTTP_CLIENT,
    &[
        ("sending_queue", Opt::Map(&[SENDING_QUEUE])),
        ("retry_on_failure", U),
        ("traces_endpoint", V),
        ("metrics_endpoint", V),
        ("logs_endpoint", V),
        ("profiles_endpoint", V),
        ("encoding", V),
    ],
];

// contrib processor/resourcedetectionprocessor/config.go and config.schema.yaml (commit
// 019a9e20906698ebed653f9b1e1a7f4ff17f0ac8): detectors, override, the per-detector settings
// (one key per detector) and confighttp's client squashed in (so `timeout`). `detectors`,
// `override` and `timeout` were already there in 2020.
const RESOURCE_DETECTION: Options = &[
    HTTP_CLIENT,
    &[
        ("detectors", V),
        ("override", V),
        ("refresh_interval", V),
        ("fail_on_missing_metadata", V),
        ("akamai", U),
        ("aks", U),
        ("alibaba_ecs", U),
        ("azure", U),
        ("azurecontainerapps", U),
        ("consul", U),
        ("digitalocean", U),
        ("docker", U),
        ("ec2", U),
        ("ecs", U),
        ("eks", U),
        ("elasticbeanstalk", U),
        ("env", U),
        ("gcp", U),
        ("heroku", U),
        ("hetzner", U),
        ("ibmcloud_classic", U),
        ("ibmcloud_vpc", U),
        ("k8s_api", U),
        ("k8snode", U),
        ("kubeadm", U),
        ("lambda", U),
        ("nova", U),
        ("openshift", U),
        ("oraclecloud", U),
        ("scaleway", U),
        ("system", U),
        ("tencent_cvm", U),
        ("upcloud", U),
        ("vultr", U),
    ],
];

// contrib pkg/datadog/config/config.go (commit 06c5f039b61d63d0d1f4aa5a4c279121c7a6f727):
// confighttp's client squashed in, `sending_queue`, `retry_on_failure`, `hostname`, `api`
// (`APIConfig`), `metrics`, `traces`, `logs`, `host_metadata`, `only_metadata`.
const DATADOG_EXPORTER: Options = &[
    HTTP_CLIENT,
    &[
        ("sending_queue", Opt::Map(&[SENDING_QUEUE])),
        ("retry_on_failure", U),
        ("hostname", V),
        (
            "api",
            Opt::Map(&[&[("key", V), ("site", V), ("fail_on_invalid_key", V)]]),
        ),
        ("metrics", U),
        ("traces", U),
        ("logs", U),
        ("host_metadata", U),
        ("only_metadata", V),
    ],
];

// contrib connector/datadogconnector/config.schema.yaml (commit
// 1ca0305c83b4aef4193c6322f8b60b2a4a9135b0): pkg/datadog/config's connector config, `traces`.
const DATADOG_CONNECTOR: Keys = &[("traces", U)];

// contrib internal/aws/awsutil/config.schema.yaml (commit
// 1ca0305c83b4aef4193c6322f8b60b2a4a9135b0): `AWSSessionSettings`, squashed into the AWS
// exporters. `region` was already there in 2020 (exporter/awsxrayexporter/config.go, commit
// 02f72917f18677b0cfdf17de9842ac550bb5642d).
const AWS_SESSION: Keys = &[
    ("certificate_file_path", V),
    ("endpoint", V),
    ("external_id", V),
    ("imds_retries", V),
    ("local_mode", V),
    ("max_retries", V),
    ("no_verify_ssl", V),
    ("num_workers", V),
    ("profile", V),
    ("proxy_address", V),
    ("region", V),
    ("request_timeout_seconds", V),
    ("resource_arn", V),
    ("role_arn", V),
    ("shared_credentials_file", V),
];

// contrib exporter/awsxrayexporter/config.schema.yaml (commit
// 09ea2f421d7b5b9771e9fbb5513c59186e7f33c1); `indexed_attributes` was already in the 2020
// config.go named above. No sending_queue.
const AWS_XRAY: Options = &[
    AWS_SESSION,
    &[
        ("aws_log_groups", V),
        ("index_all_attributes", V),
        ("indexed_attributes", V),
        ("telemetry", U),
    ],
];

// contrib exporter/awsemfexporter/config.schema.yaml (commit
// 42479a16de531f421871f970d86155affb20942b), `metric_declaration` and `label_matcher` in its
// $defs; every key used was already in exporter/awsemfexporter/config.go at commit
// 00230e9880da767f379168d75754781d3e69e340 (2020). No sending_queue.
const AWS_EMF: Options = &[
    AWS_SESSION,
    &[
        ("detailed_metrics", V),
        ("dimension_rollup_option", V),
        ("eks_fargate_container_insights_enabled", V),
        ("log_group_name", V),
        ("log_retention", V),
        ("log_stream_name", V),
        (
            "metric_declarations",
            Opt::ListOf(&Opt::Map(&[&[
                ("dimensions", V),
                ("label_matchers", U),
                ("metric_name_selectors", V),
            ]])),
        ),
        ("metric_descriptors", U),
        ("namespace", V),
        ("output_destination", V),
        ("parse_json_encoded_attr_values", V),
        (
            "resource_to_telemetry_conversion",
            Opt::Map(&[&[("enabled", V), ("exclude_service_attributes", V)]]),
        ),
        ("retain_initial_value_of_delta_metric", V),
        ("tags", Opt::FreeMap),
        ("version", V),
    ],
];

// contrib exporter/awscloudwatchlogsexporter/config.schema.yaml (commit
// 150ceabaed7c8d813d63619452a4ae82cc3af002); `log_group_name`, `log_stream_name` and `region`
// were already in its 2020 config.go (commit 012ba85f8b4ab7565c91f5c383294130e25bbc72).
const AWS_CLOUDWATCH_LOGS: Options = &[
    AWS_SESSION,
    &[
        ("log_group_name", V),
        ("log_retention", V),
        ("log_stream_name", V),
        ("raw_log", V),
        ("retry_on_failure", U),
        ("sending_queue", Opt::Map(&[SENDING_QUEUE])),
        ("tags", Opt::FreeMap),
    ],
];

// contrib exporter/prometheusremotewriteexporter/config.schema.yaml (commit
// 0b1718bc2ed25de9cba4d1957456be87e7b5a0ed): timeout, retry and confighttp's client squashed in
// (so `endpoint`, there since its 2021 config.go, commit
// 000bb0b42cf1abacefcdf086d659e7f73f2bca5e). No sending_queue: `remote_write_queue` instead.
const PROMETHEUS_REMOTE_WRITE: Options = &[
    HTTP_CLIENT,
    &[
        ("retry_on_failure", U),
        ("add_metric_suffixes", V),
        ("disable_scope_info", V),
        ("external_labels", Opt::FreeMap),
        ("http", U),
        ("max_batch_request_parallelism", V),
        ("max_batch_size_bytes", V),
        ("namespace", V),
        ("protobuf_message", V),
        ("remote_write_queue", U),
        ("resource_to_telemetry_conversion", U),
        ("send_metadata", V),
        ("target_info", U),
        ("translation_strategy", V),
        ("wal", U),
        ("export_created_metric", U),
    ],
];

// contrib extension/healthcheckextension/config.go (commit
// 0ec4f86030b8d841365ec6205c6c4249c7248cef): confighttp's server squashed in, `path`,
// `response_body`, `check_collector_pipeline`.
const HEALTH_CHECK: Options = &[
    HTTP_SERVER,
    &[
        ("path", V),
        ("response_body", U),
        ("check_collector_pipeline", U),
    ],
];

// contrib extension/storage/filestorage/config.go: `directory` (there since 2021, commit
// 0172c6cdcc2196ca18ce6c8326b14b21a573cbec), `timeout`, `compaction`, `fsync`,
// `create_directory` (v0.87), `directory_permissions`, `recreate`.
const FILE_STORAGE: Keys = &[
    ("directory", V),
    ("timeout", V),
    ("compaction", U),
    ("fsync", V),
    ("create_directory", V),
    ("directory_permissions", V),
    ("recreate", V),
];

// contrib extension/basicauthextension/config.go (commit
// 020e3759bd12decb361006c8eac9812d826db7b7): `htpasswd`, `client_auth` with `username` and
// `password` (there since 2021) and the newer `username_file`, `password_file`,
// `aws_secrets_manager`.
const BASIC_AUTH: Keys = &[
    ("htpasswd", U),
    (
        "client_auth",
        Opt::Map(&[&[
            ("username", V),
            ("username_file", V),
            ("password", V),
            ("password_file", V),
            ("aws_secrets_manager", U),
        ]]),
    ),
];

// contrib exporter/loadbalancingexporter: config.schema.yaml (commit
// 0140961f9de290fdf809390d3153c1eb214a2300) and README.md (commit
// 01c4f7c5312f0c8790e1c7cffafad99d5e693b24): `protocol.otlp` (the OTLP exporter's config, the
// template of the exporter towards each backend), `resolver` (`static`, `dns`, `k8s`,
// `aws_cloud_map`), `routing_key`, and the exporter helper's queue, retry and timeout.
// `protocol`, `resolver.static.hostnames` and `resolver.dns.hostname`/`port` were already in its
// 2021 config.go (commit 0172c6cdcc2196ca18ce6c8326b14b21a573cbec); `routing_key` and the
// top-level `sending_queue` came later, before v0.135.
const LOADBALANCING_RESOLVER: Keys = &[
    ("static", Opt::Map(&[&[("hostnames", V)]])),
    (
        "dns",
        Opt::Map(&[&[
            ("hostname", V),
            ("port", V),
            ("interval", V),
            ("timeout", V),
        ]]),
    ),
    ("k8s", U),
    ("aws_cloud_map", U),
];
const LOADBALANCING: Options = &[
    EXPORTER_HELPER,
    &[
        (
            "protocol",
            Opt::Map(&[&[("otlp", Opt::Map(OTLP_EXPORTER))]]),
        ),
        ("resolver", Opt::Map(&[LOADBALANCING_RESOLVER])),
        ("routing_key", V),
        ("routing_attributes", V),
    ],
];

// contrib processor/tailsamplingprocessor/README.md (commit
// 000e83d0bb08ee6169c72bda306bc74597460e8c): the options it lists, and a policy's `name`, `type`
// and one map named as its type. The `status_code`, `latency` and `probabilistic` policies and
// `decision_wait`, `num_traces` date from 2020-2021.
const TAIL_SAMPLING_POLICY: Keys = &[
    ("name", V),
    ("type", V),
    (
        "latency",
        Opt::Map(&[&[("threshold_ms", V), ("upper_threshold_ms", V)]]),
    ),
    (
        "probabilistic",
        Opt::Map(&[&[("hash_salt", V), ("sampling_percentage", V)]]),
    ),
    ("status_code", Opt::Map(&[&[("status_codes", V)]])),
    ("numeric_attribute", U),
    ("string_attribute", U),
    ("trace_state", U),
    ("trace_flags", U),
    ("rate_limiting", U),
    ("bytes_limiting", U),
    ("span_count", U),
    ("boolean_attribute", U),
    ("ottl_condition", U),
    ("and", U),
    ("drop", U),
    ("composite", U),
];
const TAIL_SAMPLING: Keys = &[
    ("decision_wait", V),
    ("num_traces", V),
    ("expected_new_traces_per_sec", V),
    ("decision_cache", U),
    ("sample_on_first_match", V),
    ("drop_pending_traces_on_shutdown", V),
    ("policies", Opt::ListOf(&Opt::Map(&[TAIL_SAMPLING_POLICY]))),
];

// contrib connector/spanmetricsconnector/README.md (commit
// 001f9b83c24423d9ea41a3da8fa8916742a822f3), "Configurations": every setting it lists.
const SPAN_METRICS: Keys = &[
    (
        "histogram",
        Opt::Map(&[&[
            ("disable", V),
            ("unit", V),
            ("explicit", Opt::Map(&[&[("buckets", V)]])),
            ("exponential", Opt::Map(&[&[("max_size", V)]])),
        ]]),
    ),
    (
        "dimensions",
        Opt::ListOf(&Opt::Map(&[&[("name", V), ("default", V)]])),
    ),
    ("exclude_dimensions", V),
    ("dimensions_cache_size", V),
    ("resource_metrics_cache_size", V),
    ("aggregation_temporality", V),
    ("namespace", V),
    ("metrics_flush_interval", V),
    ("metrics_expiration", V),
    ("exemplars", U),
    ("events", U),
    ("resource_metrics_key_attributes", V),
    ("delta_temporality", U),
];

// contrib exporter/azuredataexplorerexporter/config.go (commit
// 0801b46527ecbbe63c5d63d9547c7390a924ad2b): the exporter helper's timeout (squashed), queue and
// retry (accepted in 2023, issue #24329), and its own settings; all but those and
// `managed_identity_id` already in its config.go at commit aaba3899ea51e190eeab3823abf73a14d2af0123.
const AZURE_DATA_EXPLORER: Options = &[
    EXPORTER_HELPER,
    &[
        ("cluster_uri", V),
        ("application_id", V),
        ("application_key", V),
        ("tenant_id", V),
        ("managed_identity_id", V),
        ("db_name", V),
        ("metrics_table_name", V),
        ("logs_table_name", V),
        ("traces_table_name", V),
        ("metrics_table_json_mapping", V),
        ("logs_table_json_mapping", V),
        ("traces_table_json_mapping", V),
        ("ingestion_type", V),
    ],
];

struct ComponentType {
    kind: Kind,
    /// The type, as otelcol-contrib v0.135 names it. (Later Collectors renamed some types, e.g.
    /// `otlphttp` to `otlp_http`, keeping the old name as an alias: the configs use the names
    /// v0.135 knows.)
    name: &'static str,
    signals: &'static [&'static str],
    options: Options,
}

impl ComponentType {
    /// Has exporterhelper's `sending_queue` (and so `sending_queue.storage`) in its config.
    fn has_sending_queue(&self) -> bool {
        self.options
            .iter()
            .flat_map(|keys| keys.iter())
            .any(|(key, _)| *key == "sending_queue")
    }
}

const fn component(
    kind: Kind,
    name: &'static str,
    signals: &'static [&'static str],
    options: Options,
) -> ComponentType {
    ComponentType {
        kind,
        name,
        signals,
        options,
    }
}

const COMPONENT_TYPES: &[ComponentType] = &[
    // opentelemetry-collector receiver/otlpreceiver: traces, metrics, logs (stable).
    component(Kind::Receiver, "otlp", SIGNALS, &[OTLP_RECEIVER]),
    // opentelemetry-collector processor/memorylimiterprocessor: traces, metrics, logs (beta).
    component(
        Kind::Processor,
        "memory_limiter",
        SIGNALS,
        &[MEMORY_LIMITER],
    ),
    // opentelemetry-collector processor/batchprocessor: traces, metrics, logs (beta).
    component(Kind::Processor, "batch", SIGNALS, &[BATCH]),
    // contrib processor/resourcedetectionprocessor: traces, metrics, logs (beta).
    component(
        Kind::Processor,
        "resourcedetection",
        SIGNALS,
        RESOURCE_DETECTION,
    ),
    // opentelemetry-collector exporter/debugexporter: traces, metrics, logs (development).
    component(Kind::Exporter, "debug", SIGNALS, &[DEBUG]),
    // opentelemetry-collector exporter/otlpexporter: traces, metrics, logs (stable).
    component(Kind::Exporter, "otlp", SIGNALS, OTLP_EXPORTER),
    // opentelemetry-collector exporter/otlphttpexporter: traces, metrics, logs (stable).
    component(Kind::Exporter, "otlphttp", SIGNALS, OTLP_HTTP_EXPORTER),
    // contrib exporter/datadogexporter: traces, metrics (beta), logs.
    component(Kind::Exporter, "datadog", SIGNALS, DATADOG_EXPORTER),
    // contrib exporter/awsxrayexporter: traces (beta).
    component(Kind::Exporter, "awsxray", &[TRACES], AWS_XRAY),
    // contrib exporter/awsemfexporter: metrics (beta).
    component(Kind::Exporter, "awsemf", &[METRICS], AWS_EMF),
    // contrib exporter/awscloudwatchlogsexporter: logs (beta).
    component(
        Kind::Exporter,
        "awscloudwatchlogs",
        &[LOGS],
        AWS_CLOUDWATCH_LOGS,
    ),
    // contrib exporter/prometheusremotewriteexporter: metrics (beta).
    component(
        Kind::Exporter,
        "prometheusremotewrite",
        &[METRICS],
        PROMETHEUS_REMOTE_WRITE,
    ),
    // contrib exporter/loadbalancingexporter: traces, logs (beta), metrics (development).
    component(Kind::Exporter, "loadbalancing", SIGNALS, LOADBALANCING),
    // contrib exporter/azuredataexplorerexporter: traces, metrics, logs (beta).
    component(
        Kind::Exporter,
        "azuredataexplorer",
        SIGNALS,
        AZURE_DATA_EXPLORER,
    ),
    // contrib processor/tailsamplingprocessor: traces (beta).
    component(
        Kind::Processor,
        "tail_sampling",
        &[TRACES],
        &[TAIL_SAMPLING],
    ),
    // contrib connector/datadogconnector: its signals are routes, below.
    component(Kind::Connector, "datadog", &[], &[DATADOG_CONNECTOR]),
    // contrib connector/spanmetricsconnector: its signals are routes, below.
    component(Kind::Connector, "spanmetrics", &[], &[SPAN_METRICS]),
    // contrib extension/healthcheckextension, extension/storage/filestorage,
    // extension/basicauthextension: extensions have no signal.
    component(Kind::Extension, "health_check", &[], HEALTH_CHECK),
    component(Kind::Extension, "file_storage", &[], &[FILE_STORAGE]),
    component(Kind::Extension, "basicauth", &[], &[BASIC_AUTH]),
];

struct ConnectorType {
    name: &'static str,
    /// (signal of the pipeline it exports from, signal of the pipeline it receives into).
    routes: &'static [(&'static str, &'static str)],
}

const CONNECTOR_TYPES: &[ConnectorType] = &[
    // contrib connector/datadogconnector: traces -> metrics and traces -> traces (beta).
    ConnectorType {
        name: "datadog",
        routes: &[(TRACES, METRICS), (TRACES, TRACES)],
    },
    // contrib connector/spanmetricsconnector: traces -> metrics (alpha).
    ConnectorType {
        name: "spanmetrics",
        routes: &[(TRACES, METRICS)],
    },
];

/// `type` of a `type[/name]` component id.
fn type_of(id: &str) -> &str {
    id.split_once('/').map_or(id, |(ty, _)| ty)
}

fn component_type(kind: Kind, id: &str) -> Option<&'static ComponentType> {
    let ty = type_of(id);
    COMPONENT_TYPES
        .iter()
        .find(|c| c.kind == kind && c.name == ty)
}

fn connector_type(id: &str) -> Option<&'static ConnectorType> {
    let ty = type_of(id);
    CONNECTOR_TYPES.iter().find(|c| c.name == ty)
}

/// The Collector's id syntax: a type of letters, digits and `_` starting with a letter, then
/// optionally `/` and a non-empty name without spaces or `/`.
fn is_valid_id(id: &str) -> bool {
    let (ty, name) = match id.split_once('/') {
        Some((ty, name)) => (ty, Some(name)),
        None => (id, None),
    };
    let type_ok = ty.len() <= 63
        && ty.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && ty.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    let name_ok = name.is_none_or(|name| {
        !name.is_empty() && !name.contains('/') && !name.chars().any(char::is_whitespace)
    });
    type_ok && name_ok
}

// ---------------------------------------------------------------------------------------------
// Reading and merging the files.
// ---------------------------------------------------------------------------------------------

struct CollectorFile {
    /// Path relative to the crate root, as written in the `--config` flag.
    name: String,
    text: String,
    value: Value,
}

impl CollectorFile {
    fn is_base(&self) -> bool {
        self.name == BASE_FILE
    }
}

fn crate_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `collector/*.yaml` (and `*.yml`), sorted.
fn overlay_paths() -> Vec<PathBuf> {
    let dir = crate_root().join(OVERLAY_DIR);
    let mut paths: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| {
            path.is_file()
                && path
                    .extension()
                    .is_some_and(|ext| ext == "yaml" || ext == "yml")
        })
        .collect();
    paths.sort();
    paths
}

fn parse(text: &str) -> Result<Value, String> {
    let value: Value = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
    if value.is_mapping() {
        Ok(value)
    } else {
        Err("the top level is not a mapping".to_owned())
    }
}

fn load(path: &Path) -> CollectorFile {
    let name = path
        .strip_prefix(crate_root())
        .unwrap_or(path)
        .to_string_lossy()
        .replace('\\', "/");
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {name}: {e}"));
    let value = parse(&text).unwrap_or_else(|e| panic!("{name} is not valid YAML: {e}"));
    CollectorFile { name, text, value }
}

/// The base file, then every overlay.
fn collector_files() -> Vec<CollectorFile> {
    let mut files = vec![load(&crate_root().join(BASE_FILE))];
    files.extend(overlay_paths().iter().map(|path| load(path)));
    files
}

/// The Collector's merge of a later `--config` into an earlier one: maps are merged key by key,
/// anything else (lists included) is replaced.
fn merge(base: &Value, overlay: &Value) -> Value {
    match (base, overlay) {
        (Value::Mapping(base), Value::Mapping(overlay)) => {
            let mut merged = base.clone();
            for (key, value) in overlay {
                let value = match base.get(key) {
                    Some(earlier) => merge(earlier, value),
                    None => value.clone(),
                };
                merged.insert(key.clone(), value);
            }
            Value::Mapping(merged)
        }
        _ => overlay.clone(),
    }
}

/// The `--config` files of every `otelcol-contrib` command in the opening comment of `text`, in
/// order (`DD_API_KEY=... otelcol-contrib --config a --config b` gives `[a, b]`).
fn commands(text: &str) -> Vec<Vec<String>> {
    header(text)
        .lines()
        .filter_map(|line| {
            let (_, rest) = line.split_once("otelcol-contrib ")?;
            let mut words = rest.split_whitespace();
            let mut files = Vec::new();
            while let Some(word) = words.next() {
                if word == "--config"
                    && let Some(file) = words.next()
                {
                    files.push(file.to_owned());
                }
            }
            (!files.is_empty()).then_some(files)
        })
        .collect()
}

/// What the Collector runs: every command the files' opening comments give (the base alone, the
/// base with an overlay, the base with a backend overlay and a tier stacked on it, ...), each
/// once, its files merged in order. Every file gives at least the command that runs it
/// (`documentation_problems`), so a new overlay is checked as soon as it is added.
fn configurations(files: &[CollectorFile]) -> Vec<(String, Value)> {
    let mut seen = BTreeSet::new();
    let mut configurations = Vec::new();
    for file in files {
        for command in commands(&file.text) {
            let label = command.join(" + ");
            if !seen.insert(label.clone()) {
                continue;
            }
            let mut merged: Option<Value> = None;
            for name in &command {
                let named = files.iter().find(|f| f.name == *name).unwrap_or_else(|| {
                    panic!("{}: a command names {name}, no such file", file.name)
                });
                merged = Some(match merged {
                    None => named.value.clone(),
                    Some(earlier) => merge(&earlier, &named.value),
                });
            }
            configurations.push((label, merged.expect("a file")));
        }
    }
    configurations
}

/// Runs `check` on every configuration the Collector can be started with and fails with every
/// problem found.
fn assert_every_configuration(check: fn(&Value) -> Vec<String>) {
    let files = collector_files();
    let problems: Vec<String> = configurations(&files)
        .iter()
        .flat_map(|(label, config)| {
            check(config)
                .into_iter()
                .map(move |p| format!("{label}: {p}"))
        })
        .collect();
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

/// Runs `check` on every file as written.
fn assert_every_file(check: fn(&CollectorFile) -> Vec<String>) {
    let problems: Vec<String> = collector_files()
        .iter()
        .flat_map(|file| {
            check(file)
                .into_iter()
                .map(|p| format!("{}: {p}", file.name))
        })
        .collect();
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// Reading a parsed config.
// ---------------------------------------------------------------------------------------------

fn get<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter()
        .try_fold(value, |value, key| value.as_mapping()?.get(*key))
}

fn key_string(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        other => serde_yaml_ng::to_string(other)
            .map(|s| s.trim().to_owned())
            .unwrap_or_default(),
    }
}

/// The entries of a mapping (nothing for anything else).
fn entries(value: Option<&Value>) -> Vec<(String, &Value)> {
    value
        .and_then(Value::as_mapping)
        .map(|m| m.iter().map(|(k, v)| (key_string(k), v)).collect())
        .unwrap_or_default()
}

/// The strings of a list (nothing for anything else).
fn strings(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_sequence)
        .map(|s| {
            s.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn is_defined(config: &Value, section: &str, id: &str) -> bool {
    get(config, &[section])
        .and_then(Value::as_mapping)
        .is_some_and(|m| m.contains_key(id))
}

/// Visits every node below `value` with its path of keys (list items by index).
fn walk(value: &Value, path: &mut Vec<String>, visit: &mut dyn FnMut(&[String], &Value)) {
    visit(path, value);
    match value {
        Value::Mapping(m) => {
            for (k, v) in m {
                path.push(key_string(k));
                walk(v, path, visit);
                path.pop();
            }
        }
        Value::Sequence(s) => {
            for (i, v) in s.iter().enumerate() {
                path.push(i.to_string());
                walk(v, path, visit);
                path.pop();
            }
        }
        Value::Tagged(tagged) => walk(&tagged.value, path, visit),
        _ => {}
    }
}

fn dotted(prefix: &[&str], path: &[String]) -> String {
    prefix
        .iter()
        .copied()
        .chain(path.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(".")
}

struct Pipeline {
    id: String,
    signal: String,
    receivers: Vec<String>,
    processors: Vec<String>,
    exporters: Vec<String>,
}

fn pipelines(config: &Value) -> Vec<Pipeline> {
    entries(get(config, &["service", "pipelines"]))
        .into_iter()
        .map(|(id, pipeline)| Pipeline {
            signal: type_of(&id).to_owned(),
            receivers: strings(pipeline.get("receivers")),
            processors: strings(pipeline.get("processors")),
            exporters: strings(pipeline.get("exporters")),
            id,
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// `${env:NAME}` and `${env:NAME:-default}` references (confmap's env provider; the name must match
// ^[a-zA-Z_][a-zA-Z0-9_]*$, and the Collector refuses a `$` inside a reference).
// ---------------------------------------------------------------------------------------------

#[derive(Debug, PartialEq, Eq)]
struct EnvRef {
    name: String,
    default: Option<String>,
    /// Byte range of `${...}` in the string.
    start: usize,
    end: usize,
}

fn is_valid_env_name(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The references in `s`, or why one is malformed. `$$` is the Collector's escape for a literal
/// `$`; a `$` followed by anything but `{`, `$` or a name (a regex's end anchor) is literal.
fn env_references(s: &str) -> Result<Vec<EnvRef>, String> {
    let bytes = s.as_bytes();
    let mut refs = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'$' {
            i += 1;
            continue;
        }
        match bytes.get(i + 1) {
            Some(b'$') => i += 2,
            Some(b'{') => {
                let Some(close) = s[i + 2..].find('}') else {
                    return Err(format!("`{}` is never closed", &s[i..]));
                };
                let end = i + 2 + close + 1;
                let reference = &s[i..end];
                let Some(inner) = s[i + 2..end - 1].strip_prefix("env:") else {
                    return Err(format!("`{reference}` is not an `${{env:NAME}}` reference"));
                };
                let (name, default) = match inner.split_once(":-") {
                    Some((name, default)) => (name, Some(default)),
                    None => (inner, None),
                };
                if !is_valid_env_name(name) {
                    return Err(format!(
                        "`{reference}`: `{name}` is not a variable name ([a-zA-Z_][a-zA-Z0-9_]*)"
                    ));
                }
                if default.is_some_and(|d| d.contains('$') || d.contains('{')) {
                    return Err(format!(
                        "`{reference}`: a default cannot hold `$` or `{{` (no nested references)"
                    ));
                }
                refs.push(EnvRef {
                    name: name.to_owned(),
                    default: default.map(str::to_owned),
                    start: i,
                    end,
                });
                i = end;
            }
            Some(&c) if c.is_ascii_alphabetic() || c == b'_' => {
                return Err(format!(
                    "`{}`: a bare `$NAME` is not expanded by the Collector, write `${{env:NAME}}`",
                    &s[i..]
                ));
            }
            _ => i += 1,
        }
    }
    Ok(refs)
}

/// `s` with every reference replaced by its default, or the name of the first one without.
fn with_defaults(s: &str) -> Result<String, String> {
    let refs = env_references(s)?;
    let mut resolved = String::new();
    let mut last = 0;
    for reference in refs {
        let Some(default) = reference.default else {
            return Err(format!(
                "`{}` has no default",
                &s[reference.start..reference.end]
            ));
        };
        resolved.push_str(&s[last..reference.start]);
        resolved.push_str(&default);
        last = reference.end;
    }
    resolved.push_str(&s[last..]);
    Ok(resolved)
}

/// `s` without its references (and unchanged when one is malformed).
fn without_references(s: &str) -> String {
    let Ok(refs) = env_references(s) else {
        return s.to_owned();
    };
    let mut rest = String::new();
    let mut last = 0;
    for reference in refs {
        rest.push_str(&s[last..reference.start]);
        rest.push(' ');
        last = reference.end;
    }
    rest.push_str(&s[last..]);
    rest
}

/// Every variable a config reads.
fn env_names(value: &Value) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    walk(value, &mut Vec::new(), &mut |_, node| {
        if let Some(s) = node.as_str() {
            names.extend(
                env_references(s)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|r| r.name),
            );
        }
    });
    names
}

// ---------------------------------------------------------------------------------------------
// The checks. Each returns the problems it finds; an empty list is a pass.
// ---------------------------------------------------------------------------------------------

/// Every id is well formed, every component a pipeline or `service.extensions` names is defined in
/// its section (connectors under `connectors`), every pipeline has receivers and exporters, and
/// every connector is both an exporter and a receiver.
fn undefined_components(config: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    for section in [
        "receivers",
        "processors",
        "exporters",
        "connectors",
        "extensions",
    ] {
        for (id, _) in entries(get(config, &[section])) {
            if !is_valid_id(&id) {
                problems.push(format!("{section}.{id}: not a component id (type[/name])"));
            }
        }
    }
    if entries(get(config, &["service", "pipelines"])).is_empty() {
        problems.push("service.pipelines: no pipeline".to_owned());
    }
    let pipelines = pipelines(config);
    for (id, pipeline) in entries(get(config, &["service", "pipelines"])) {
        for list in ["receivers", "processors", "exporters"] {
            match pipeline.get(list) {
                None => {}
                Some(Value::Sequence(items)) if items.iter().all(Value::is_string) => {}
                Some(_) => problems.push(format!(
                    "service.pipelines.{id}.{list}: not a list of component ids"
                )),
            }
        }
    }
    for pipeline in &pipelines {
        let at = format!("service.pipelines.{}", pipeline.id);
        if !is_valid_id(&pipeline.id) || !SIGNALS.contains(&pipeline.signal.as_str()) {
            problems.push(format!(
                "{at}: a pipeline id is a signal ({}) with an optional /name",
                SIGNALS.join(", ")
            ));
        }
        if pipeline.receivers.is_empty() {
            problems.push(format!("{at}: no receiver"));
        }
        if pipeline.exporters.is_empty() {
            problems.push(format!("{at}: no exporter"));
        }
        let lists: [(&str, &Vec<String>, &[&str]); 3] = [
            (
                "receivers",
                &pipeline.receivers,
                &["receivers", "connectors"],
            ),
            ("processors", &pipeline.processors, &["processors"]),
            (
                "exporters",
                &pipeline.exporters,
                &["exporters", "connectors"],
            ),
        ];
        for (list, ids, sections) in lists {
            let mut seen = BTreeSet::new();
            for id in ids {
                if !seen.insert(id) {
                    problems.push(format!("{at}.{list}: `{id}` is listed twice"));
                }
                if !sections
                    .iter()
                    .any(|section| is_defined(config, section, id))
                {
                    problems.push(format!(
                        "{at}.{list}: `{id}` is not defined under {}",
                        sections.join(" or ")
                    ));
                }
            }
        }
    }
    for id in strings(get(config, &["service", "extensions"])) {
        if !is_defined(config, "extensions", &id) {
            problems.push(format!(
                "service.extensions: `{id}` is not defined under extensions"
            ));
        }
    }
    for (id, _) in entries(get(config, &["connectors"])) {
        let exported_to = pipelines.iter().any(|p| p.exporters.contains(&id));
        let received_from = pipelines.iter().any(|p| p.receivers.contains(&id));
        if exported_to && !received_from {
            problems.push(format!(
                "connectors.{id}: exported to but no pipeline receives from it"
            ));
        }
        if received_from && !exported_to {
            problems.push(format!(
                "connectors.{id}: received from but no pipeline exports to it"
            ));
        }
    }
    problems
}

/// Every component of a pipeline supports the pipeline's signal, every connector joins signals it
/// supports, and every type used (extensions included) is in the table above.
fn unsupported_signals(config: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let pipelines = pipelines(config);
    for pipeline in &pipelines {
        let lists = [
            (Kind::Receiver, &pipeline.receivers),
            (Kind::Processor, &pipeline.processors),
            (Kind::Exporter, &pipeline.exporters),
        ];
        for (kind, ids) in lists {
            for id in ids {
                if kind != Kind::Processor && is_defined(config, "connectors", id) {
                    continue;
                }
                match component_type(kind, id) {
                    None => problems.push(format!(
                        "service.pipelines.{}: {} type `{}` is not in this test's table of \
                         component types: add it with the signals its README lists",
                        pipeline.id,
                        kind.name(),
                        type_of(id)
                    )),
                    Some(ty) if !ty.signals.contains(&pipeline.signal.as_str()) => {
                        problems.push(format!(
                            "service.pipelines.{}: {} `{id}` does not support {} (only {})",
                            pipeline.id,
                            kind.name(),
                            pipeline.signal,
                            ty.signals.join(", ")
                        ));
                    }
                    Some(_) => {}
                }
            }
        }
    }
    for (id, _) in entries(get(config, &["connectors"])) {
        let Some(connector) = connector_type(&id) else {
            problems.push(format!(
                "connectors.{id}: connector type `{}` is not in this test's table",
                type_of(&id)
            ));
            continue;
        };
        let from: BTreeSet<&str> = pipelines
            .iter()
            .filter(|p| p.exporters.contains(&id))
            .map(|p| p.signal.as_str())
            .collect();
        let into: BTreeSet<&str> = pipelines
            .iter()
            .filter(|p| p.receivers.contains(&id))
            .map(|p| p.signal.as_str())
            .collect();
        let routes = |f: &str, t: &str| connector.routes.iter().any(|&(a, b)| a == f && b == t);
        for f in &from {
            if !into.is_empty() && !into.iter().any(|t| routes(f, t)) {
                problems.push(format!(
                    "connectors.{id}: exported to from {f}, but it cannot feed any of the \
                     pipelines receiving from it ({})",
                    into.iter().copied().collect::<Vec<_>>().join(", ")
                ));
            }
        }
        for t in &into {
            if !from.is_empty() && !from.iter().any(|f| routes(f, t)) {
                problems.push(format!(
                    "connectors.{id}: received from in {t}, but it cannot produce {t} from what \
                     it is exported ({})",
                    from.iter().copied().collect::<Vec<_>>().join(", ")
                ));
            }
        }
    }
    for id in strings(get(config, &["service", "extensions"])) {
        if component_type(Kind::Extension, &id).is_none() {
            problems.push(format!(
                "service.extensions: extension type `{}` is not in this test's table",
                type_of(&id)
            ));
        }
    }
    problems
}

/// The keys a configuration may have at its top level, in `service` and in a pipeline
/// (opentelemetry-collector v0.135.0 otelcol/config.go, service/config.go,
/// service/pipelines/config.go).
const TOP_LEVEL: Keys = &[
    ("receivers", U),
    ("processors", U),
    ("exporters", U),
    ("connectors", U),
    ("extensions", U),
    (
        "service",
        Opt::Map(&[&[("extensions", V), ("pipelines", U), ("telemetry", U)]]),
    ),
];
const PIPELINE: Keys = &[("receivers", V), ("processors", V), ("exporters", V)];

/// The problems of `value` against what `opt` allows, at `path`.
fn option_problems(value: &Value, opt: Opt, path: &str, problems: &mut Vec<String>) {
    match (opt, value) {
        (Opt::Unchecked, _) | (_, Value::Null) => {}
        (Opt::Value, Value::Mapping(_)) => {
            problems.push(format!("{path}: a map, where the option takes a value"));
        }
        (Opt::Value, _) => {}
        (Opt::FreeMap, Value::Mapping(_)) => {}
        (Opt::FreeMap, _) => problems.push(format!("{path}: not a map")),
        (Opt::ListOf(item), Value::Sequence(items)) => {
            for (i, value) in items.iter().enumerate() {
                option_problems(value, *item, &format!("{path}.{i}"), problems);
            }
        }
        (Opt::ListOf(_), _) => problems.push(format!("{path}: not a list")),
        (Opt::Map(groups), Value::Mapping(map)) => {
            let keys = || groups.iter().flat_map(|keys| keys.iter());
            for (key, value) in map {
                let key = key_string(key);
                match keys().find(|(known, _)| *known == key) {
                    Some((_, opt)) => {
                        option_problems(value, *opt, &format!("{path}.{key}"), problems)
                    }
                    None => {
                        let mut known: Vec<&str> = keys().map(|(known, _)| *known).collect();
                        known.sort_unstable();
                        problems.push(format!(
                            "{path}.{key}: unknown option (the Collector refuses it); known here: {}",
                            known.join(", ")
                        ));
                    }
                }
            }
        }
        (Opt::Map(_), _) => problems.push(format!("{path}: not a map")),
    }
}

/// Every option of every component is one its config struct has (the Collector refuses a
/// config with an unknown key), down to the nested maps the tables above describe; and the
/// top level, `service` and every pipeline have only the keys the Collector knows.
fn unknown_options(config: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    option_problems(config, Opt::Map(&[TOP_LEVEL]), "", &mut problems);
    for (id, pipeline) in entries(get(config, &["service", "pipelines"])) {
        let at = format!("service.pipelines.{id}");
        option_problems(pipeline, Opt::Map(&[PIPELINE]), &at, &mut problems);
    }
    for kind in Kind::ALL {
        let section = kind.section();
        for (id, settings) in entries(get(config, &[section])) {
            let at = format!("{section}.{id}");
            match component_type(kind, &id) {
                Some(ty) => option_problems(settings, Opt::Map(ty.options), &at, &mut problems),
                None => problems.push(format!(
                    "{at}: {} type `{}` is not in this test's table: add it with the options \
                     of its config struct",
                    kind.name(),
                    type_of(&id)
                )),
            }
        }
    }
    // The top-level path starts with a dot: drop it.
    problems
        .into_iter()
        .map(|p| p.strip_prefix('.').map(str::to_owned).unwrap_or(p))
        .collect()
}

/// memory_limiter is the first processor of every pipeline (it refuses data before anything else
/// holds it) and batch the last.
fn misplaced_processors(config: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    for pipeline in pipelines(config) {
        let at = format!("service.pipelines.{}.processors", pipeline.id);
        match pipeline.processors.first() {
            Some(first) if type_of(first) == "memory_limiter" => {}
            Some(first) => {
                problems.push(format!("{at}: starts with `{first}`, not memory_limiter"))
            }
            None => problems.push(format!("{at}: none, so no memory_limiter")),
        }
        match pipeline.processors.last() {
            Some(last) if type_of(last) == "batch" => {}
            Some(last) => problems.push(format!("{at}: ends with `{last}`, not batch")),
            None => problems.push(format!("{at}: none, so no batch")),
        }
    }
    problems
}

/// Every extension a component relies on (`auth.authenticator`, `sending_queue.storage`, any
/// `authenticator` or `storage` key) is defined and listed in `service.extensions`.
fn extensions_not_enabled(config: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let enabled = strings(get(config, &["service", "extensions"]));
    for section in [
        "receivers",
        "processors",
        "exporters",
        "connectors",
        "extensions",
    ] {
        for (id, settings) in entries(get(config, &[section])) {
            walk(settings, &mut Vec::new(), &mut |path, value| {
                let Some(key) = path.last() else { return };
                let Some(extension) = value.as_str() else {
                    return;
                };
                if key != "authenticator" && key != "storage" {
                    return;
                }
                let at = dotted(&[section, &id], path);
                if !is_defined(config, "extensions", extension) {
                    problems.push(format!(
                        "{at}: extension `{extension}` is not defined under extensions"
                    ));
                } else if !enabled.iter().any(|e| e == extension) {
                    problems.push(format!(
                        "{at}: extension `{extension}` is not listed in service.extensions"
                    ));
                }
            });
        }
    }
    problems
}

const SECRET_KEY_WORDS: &[&str] = &[
    "key",
    "password",
    "passwd",
    "token",
    "secret",
    "credential",
    "authorization",
];

/// Keys with a secret-looking word that hold no credential: the loadbalancing exporter's
/// `routing_key` names what it routes by (`traceID`).
const NOT_SECRET_KEYS: &[&str] = &["routing_key"];

/// A key that holds a credential (`api.key`, `password`, `DD-API-KEY`, `Authorization`, ...),
/// not a path to one (`key_file`, `password_file`).
fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_KEY_WORDS.iter().any(|word| key.contains(word))
        && !key.ends_with("_file")
        && !key.ends_with("_path")
        && !NOT_SECRET_KEYS.contains(&key.as_str())
}

/// Why a word of a line looks like a credential, if it does.
fn credential_like(line: &str) -> Option<&'static str> {
    // user:password@ in a URL.
    for (i, _) in line.match_indices("://") {
        let authority = line[i + 3..]
            .split(|c: char| c == '/' || c == '?' || c == '#' || c.is_whitespace())
            .next()
            .unwrap_or_default();
        if let Some((userinfo, _)) = authority.rsplit_once('@')
            && userinfo
                .split_once(':')
                .is_some_and(|(_, pw)| !pw.is_empty())
        {
            return Some("a password in a URL");
        }
    }
    let words = line
        .split(|c: char| !(c.is_ascii_alphanumeric() || "_-+/=".contains(c)))
        .filter(|w| !w.is_empty());
    for word in words {
        let alnum_runs = word
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|w| !w.is_empty());
        for run in alnum_runs {
            if run.len() == 20
                && (run.starts_with("AKIA") || run.starts_with("ASIA"))
                && run
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
            {
                return Some("an AWS access key id");
            }
            if run.len() >= 32
                && run.chars().all(|c| c.is_ascii_hexdigit())
                && run.chars().any(|c| c.is_ascii_digit())
            {
                return Some("a long hexadecimal key (a Datadog API key is 32)");
            }
        }
        let known_prefixes = ["glc_", "ghp_", "github_pat_", "xoxb-", "xoxp-", "eyJ"];
        if word.len() >= 20 && known_prefixes.iter().any(|p| word.starts_with(p)) {
            return Some("a token with a well-known prefix");
        }
        if word.len() >= 40
            && word.chars().any(|c| c.is_ascii_lowercase())
            && word.chars().any(|c| c.is_ascii_uppercase())
            && word.chars().any(|c| c.is_ascii_digit())
        {
            return Some("a long random-looking token");
        }
    }
    for scheme in ["Basic ", "Bearer "] {
        if let Some((_, rest)) = line.split_once(scheme)
            && rest
                .split_whitespace()
                .next()
                .is_some_and(|token| token.len() >= 16)
        {
            return Some("an Authorization header value");
        }
    }
    None
}

/// No credential is written in a file: every value under a secret-looking key is a single
/// `${env:NAME}` (without a default, which would be a literal), and no line, comments included,
/// holds something that looks like a credential.
fn literal_secrets(text: &str, value: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    walk(value, &mut Vec::new(), &mut |path, node| {
        let Some(key) = path.last() else { return };
        if !is_secret_key(key) {
            return;
        }
        let at = dotted(&[], path);
        match node {
            Value::String(s) => match env_references(s).as_deref() {
                Ok([only]) if only.start == 0 && only.end == s.len() => {
                    if only.default.is_some() {
                        problems.push(format!(
                            "{at}: the default of `{s}` would be a literal secret"
                        ));
                    }
                }
                _ => problems.push(format!("{at}: a literal value, use `${{env:NAME}}` alone")),
            },
            Value::Null => problems.push(format!("{at}: empty, use `${{env:NAME}}`")),
            Value::Bool(_) | Value::Number(_) => {
                problems.push(format!("{at}: a literal value, use `${{env:NAME}}`"));
            }
            Value::Sequence(_) | Value::Mapping(_) | Value::Tagged(_) => {}
        }
    });
    for (number, line) in text.lines().enumerate() {
        if let Some(why) = credential_like(&without_references(line)) {
            problems.push(format!("line {}: looks like {why}", number + 1));
        }
    }
    problems
}

/// The host of a listen address (`host:port`, `[v6]:port`, or a URL): empty for `:4317`.
fn listen_host(address: &str) -> &str {
    let address = address
        .split_once("://")
        .map_or(address, |(_, rest)| rest)
        .split('/')
        .next()
        .unwrap_or_default();
    match address.strip_prefix('[') {
        Some(rest) => rest.split_once(']').map_or(rest, |(host, _)| host),
        None => address.rsplit_once(':').map_or(address, |(host, _)| host),
    }
}

/// Whether a listen address binds every interface: 0.0.0.0, ::, [::] or no host at all (`:4317`).
fn binds_every_interface(address: &str) -> bool {
    let host = listen_host(address);
    host.is_empty() || host.chars().all(|c| c == '0' || c == '.' || c == ':')
}

/// The hosts a listener may name by default: the README promises "OTLP receivers on
/// `localhost`".
const LOCAL_HOSTS: &[&str] = &["localhost", "127.0.0.1"];

/// Receivers and extensions (the components that listen) listen on localhost only unless told
/// otherwise: a literal endpoint, or the default of its `${env:X:-default}`, names `localhost`
/// or `127.0.0.1`, and an endpoint from the environment has a default.
fn non_local_listeners(config: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    for section in ["receivers", "extensions"] {
        for (id, settings) in entries(get(config, &[section])) {
            walk(settings, &mut Vec::new(), &mut |path, value| {
                if path.last().is_none_or(|key| key != "endpoint") {
                    return;
                }
                let Some(endpoint) = value.as_str() else {
                    return;
                };
                let at = dotted(&[section, &id], path);
                match with_defaults(endpoint) {
                    Err(why) => problems.push(format!(
                        "{at}: {why}: where it listens is left to the environment"
                    )),
                    Ok(address) if binds_every_interface(&address) => problems.push(format!(
                        "{at}: listens on `{address}`, every interface, by default"
                    )),
                    Ok(address) if !LOCAL_HOSTS.contains(&listen_host(&address)) => {
                        problems.push(format!(
                            "{at}: listens on `{address}`, not localhost, by default"
                        ));
                    }
                    Ok(_) => {}
                }
            });
        }
    }
    problems
}

/// Every `${...}` in a value is a well formed `${env:NAME}` or `${env:NAME:-default}`, and no
/// value holds a bare `$NAME`.
fn malformed_env_references(config: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    walk(config, &mut Vec::new(), &mut |path, node| {
        if let Some(s) = node.as_str()
            && let Err(why) = env_references(s)
        {
            problems.push(format!("{}: {why}", dotted(&[], path)));
        }
    });
    problems
}

/// An exporter has `sending_queue` only when its type supports it (the Collector refuses unknown
/// keys), and in an overlay every exporter that supports it queues on disk
/// (`sending_queue.storage`) so that what waits for the backend survives a restart.
fn queue_problems(file: &Value, overlay: bool) -> Vec<String> {
    let mut problems = Vec::new();
    for (id, settings) in entries(get(file, &["exporters"])) {
        let Some(ty) = component_type(Kind::Exporter, &id) else {
            problems.push(format!(
                "exporters.{id}: exporter type `{}` is not in this test's table",
                type_of(&id)
            ));
            continue;
        };
        let queue = settings.get("sending_queue");
        if !ty.has_sending_queue() {
            if queue.is_some() {
                problems.push(format!(
                    "exporters.{id}: `{}` has no sending_queue option",
                    type_of(&id)
                ));
            }
            continue;
        }
        if overlay
            && queue
                .and_then(|q| q.get("storage"))
                .and_then(Value::as_str)
                .is_none()
        {
            problems.push(format!(
                "exporters.{id}: no sending_queue.storage, so its queue is lost on restart"
            ));
        }
    }
    problems
}

/// The comment block a file starts with.
fn header(text: &str) -> String {
    text.lines()
        .take_while(|line| line.trim().is_empty() || line.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A file's opening comment gives a command that runs it (the base alone; an overlay last, after
/// the base and any overlay it stacks on) and names every variable it reads.
fn documentation_problems(name: &str, text: &str, value: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let header = header(text);
    let runs_it = commands(text).iter().any(|files| {
        files.first().is_some_and(|first| first == BASE_FILE)
            && files.last().is_some_and(|last| last == name)
    });
    if !runs_it {
        let command = if name == BASE_FILE {
            format!("otelcol-contrib --config {BASE_FILE}")
        } else {
            format!("otelcol-contrib --config {BASE_FILE} [--config ...] --config {name}")
        };
        problems.push(format!("the opening comment does not give `{command}`"));
    }
    for variable in env_names(value) {
        if !header.contains(&variable) {
            problems.push(format!("the opening comment does not list {variable}"));
        }
    }
    problems
}

// ---------------------------------------------------------------------------------------------
// What each component's documentation requires of its settings, beyond their names: required
// settings, the values a setting takes, which signals a setting suits. A value from the
// environment is checked through its default, and taken as set.
// ---------------------------------------------------------------------------------------------

/// Whether a setting is given: present, not null, not an empty string or list.
fn is_set(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) => !s.trim().is_empty(),
        Some(Value::Sequence(items)) => !items.is_empty(),
        Some(_) => true,
    }
}

/// The value the Collector reads, as text, when the file decides it: a literal, or the default
/// of an `${env:...}` reference; `None` when the environment decides.
fn known_value(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => with_defaults(s).ok(),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `at` is one of `allowed` (when the file decides it).
fn one_of(at: &str, value: Option<&Value>, allowed: &[&str], problems: &mut Vec<String>) {
    if let Some(value) = value.and_then(known_value)
        && !allowed.contains(&value.as_str())
    {
        problems.push(format!(
            "{at}: `{value}` is not one of {} (its README)",
            allowed.join(", ")
        ));
    }
}

/// The loadbalancing exporter's `routing_key` values, and the signals each routes (its README's
/// table: "Don't use traceID in metric pipeline"). Without `routing_key`, `traceID`.
const ROUTING_KEYS: &[(&str, &[&str])] = &[
    ("service", &[LOGS, TRACES, METRICS]),
    ("traceID", &[LOGS, TRACES]),
    ("resource", &[METRICS]),
    ("metric", &[METRICS]),
];

/// contrib exporter/loadbalancingexporter README (commit 01c4f7c5...): `protocol.otlp` is the
/// template of the exporter towards each backend and its `endpoint` "should not be set" (the
/// resolver's addresses replace it); a resolver is required ("a source of backend information":
/// `static` with its `hostnames`, `dns` with its `hostname`, or `k8s`; "if all three are
/// specified, `k8s` takes precedence", so giving several is a mistake); `routing_key` is one of
/// the table's and suits every signal of the pipelines exporting to it.
fn loadbalancing_problems(at: &str, settings: &Value, signals: &[&str]) -> Vec<String> {
    let mut problems = Vec::new();
    match get(settings, &["protocol", "otlp"]) {
        None => problems.push(format!(
            "{at}.protocol.otlp: required, the exporter towards each backend"
        )),
        Some(otlp) if is_set(otlp.get("endpoint")) => problems.push(format!(
            "{at}.protocol.otlp.endpoint: set by the resolver, must not be given"
        )),
        Some(_) => {}
    }
    let resolvers: Vec<String> = entries(settings.get("resolver"))
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    match resolvers.as_slice() {
        [] => problems.push(format!(
            "{at}.resolver: required, one of static, dns, k8s, aws_cloud_map"
        )),
        [_] => {}
        several => problems.push(format!(
            "{at}.resolver: {} given, only one is used",
            several.join(" and ")
        )),
    }
    if get(settings, &["resolver", "static"]).is_some()
        && !is_set(get(settings, &["resolver", "static", "hostnames"]))
    {
        problems.push(format!(
            "{at}.resolver.static.hostnames: required, the backends"
        ));
    }
    if get(settings, &["resolver", "dns"]).is_some()
        && !is_set(get(settings, &["resolver", "dns", "hostname"]))
    {
        problems.push(format!(
            "{at}.resolver.dns.hostname: required, the name resolving to the backends"
        ));
    }
    let key = match settings.get("routing_key") {
        None | Some(Value::Null) => Some("traceID".to_owned()),
        Some(value) => known_value(value),
    };
    if let Some(key) = key {
        match ROUTING_KEYS.iter().find(|(name, _)| *name == key) {
            None => problems.push(format!(
                "{at}.routing_key: `{key}` is not one of {} (its README)",
                ROUTING_KEYS
                    .iter()
                    .map(|(name, _)| *name)
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            Some((_, suits)) => {
                for signal in signals.iter().filter(|signal| !suits.contains(signal)) {
                    problems.push(format!(
                        "{at}.routing_key: `{key}` cannot route {signal} (only {})",
                        suits.join(", ")
                    ));
                }
            }
        }
    }
    problems
}

/// The tail_sampling policy types its README lists.
const TAIL_SAMPLING_POLICY_TYPES: &[&str] = &[
    "always_sample",
    "latency",
    "numeric_attribute",
    "probabilistic",
    "status_code",
    "string_attribute",
    "trace_state",
    "trace_flags",
    "rate_limiting",
    "bytes_limiting",
    "span_count",
    "boolean_attribute",
    "ottl_condition",
    "and",
    "drop",
    "composite",
];

/// contrib processor/tailsamplingprocessor README (commit 000e83d0...): `policies` is required;
/// each policy has a name (unique: the processor refuses duplicates), a `type` of the list and,
/// but for `always_sample`, the settings of that type under its name; `latency` needs
/// `threshold_ms`, `probabilistic` a `sampling_percentage` (a percentage, above 0 and at most
/// 100), `status_code` its `status_codes`, each `OK`, `ERROR` or `UNSET`.
fn tail_sampling_problems(at: &str, settings: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let policies = settings
        .get("policies")
        .and_then(Value::as_sequence)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if policies.is_empty() {
        problems.push(format!("{at}.policies: required, no policy given"));
    }
    let mut names = BTreeSet::new();
    for (i, policy) in policies.iter().enumerate() {
        let at = format!("{at}.policies.{i}");
        match policy.get("name").and_then(Value::as_str) {
            Some(name) if !name.trim().is_empty() => {
                if !names.insert(name) {
                    problems.push(format!("{at}.name: `{name}` names two policies"));
                }
            }
            _ => problems.push(format!("{at}.name: required")),
        }
        let Some(ty) = policy.get("type").and_then(Value::as_str) else {
            problems.push(format!("{at}.type: required"));
            continue;
        };
        if !TAIL_SAMPLING_POLICY_TYPES.contains(&ty) {
            problems.push(format!(
                "{at}.type: `{ty}` is not one of {} (its README)",
                TAIL_SAMPLING_POLICY_TYPES.join(", ")
            ));
            continue;
        }
        if ty != "always_sample" && policy.get(ty).is_none() {
            problems.push(format!("{at}.{ty}: required by type {ty}"));
        }
        for (key, _) in entries(Some(policy)) {
            if key != "name" && key != "type" && key != ty {
                problems.push(format!(
                    "{at}.{key}: settings of another type than {ty}, ignored"
                ));
            }
        }
        match ty {
            "latency" if !is_set(get(policy, &["latency", "threshold_ms"])) => {
                problems.push(format!("{at}.latency.threshold_ms: required"));
            }
            "probabilistic" => {
                let percentage = get(policy, &["probabilistic", "sampling_percentage"]);
                match percentage.map(|p| known_value(p).map(|v| v.parse::<f64>())) {
                    None => {
                        problems.push(format!("{at}.probabilistic.sampling_percentage: required"))
                    }
                    Some(Some(Ok(p))) if p > 0.0 && p <= 100.0 => {}
                    Some(None) => {}
                    Some(_) => problems.push(format!(
                        "{at}.probabilistic.sampling_percentage: a percentage above 0 and at \
                         most 100"
                    )),
                }
            }
            "status_code" => {
                let codes = strings(get(policy, &["status_code", "status_codes"]));
                if codes.is_empty() {
                    problems.push(format!("{at}.status_code.status_codes: required"));
                }
                for code in codes {
                    if !["OK", "ERROR", "UNSET"].contains(&code.as_str()) {
                        problems.push(format!(
                            "{at}.status_code.status_codes: `{code}` is not OK, ERROR or UNSET"
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    problems
}

/// Whether `s` is a Go duration as the Collector reads one (`500ms`, `2.5s`, `1m30s`).
fn is_go_duration(s: &str) -> bool {
    let mut rest = s;
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let number = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if number == 0 || rest[..number].parse::<f64>().is_err() {
            return false;
        }
        rest = &rest[number..];
        let Some(unit) = ["ns", "us", "µs", "ms", "s", "m", "h"]
            .iter()
            .filter(|unit| rest.starts_with(**unit))
            .max_by_key(|unit| unit.len())
        else {
            return false;
        };
        rest = &rest[unit.len()..];
    }
    true
}

/// contrib connector/spanmetricsconnector README (commit 001f9b83...): the histogram "must be
/// either explicit or exponential", its `unit` `ms` or `s`, explicit `buckets` durations;
/// `aggregation_temporality` one of the two it names; every dimension has a `name`.
fn span_metrics_problems(at: &str, settings: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let histogram = settings.get("histogram");
    if histogram.is_some_and(|h| h.get("explicit").is_some() && h.get("exponential").is_some()) {
        problems.push(format!(
            "{at}.histogram: explicit and exponential, it must be either"
        ));
    }
    one_of(
        &format!("{at}.histogram.unit"),
        histogram.and_then(|h| h.get("unit")),
        &["ms", "s"],
        &mut problems,
    );
    for bucket in strings(get(settings, &["histogram", "explicit", "buckets"])) {
        if !is_go_duration(&bucket) {
            problems.push(format!(
                "{at}.histogram.explicit.buckets: `{bucket}` is not a duration (`5ms`, `1s`)"
            ));
        }
    }
    one_of(
        &format!("{at}.aggregation_temporality"),
        settings.get("aggregation_temporality"),
        &[
            "AGGREGATION_TEMPORALITY_CUMULATIVE",
            "AGGREGATION_TEMPORALITY_DELTA",
        ],
        &mut problems,
    );
    for (i, dimension) in settings
        .get("dimensions")
        .and_then(Value::as_sequence)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        if !is_set(dimension.get("name")) {
            problems.push(format!("{at}.dimensions.{i}.name: required"));
        }
    }
    problems
}

/// contrib exporter/azuredataexplorerexporter README and config.go's `Validate` (commit
/// 0801b46...): `cluster_uri` is required; so is an identity, either `application_id`,
/// `application_key` and `tenant_id` together or `managed_identity_id` (`system` or a UUID);
/// `ingestion_type` is `queued` or `managed`.
fn azure_data_explorer_problems(at: &str, settings: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    if !is_set(settings.get("cluster_uri")) {
        problems.push(format!("{at}.cluster_uri: required"));
    }
    let application = ["application_id", "application_key", "tenant_id"];
    let given: Vec<&str> = application
        .iter()
        .copied()
        .filter(|key| is_set(settings.get(*key)))
        .collect();
    let managed = settings.get("managed_identity_id");
    if !given.is_empty() && given.len() < application.len() {
        problems.push(format!(
            "{at}: {} without {}: an app registration needs all three",
            given.join(", "),
            application
                .iter()
                .filter(|key| !given.contains(key))
                .copied()
                .collect::<Vec<_>>()
                .join(", ")
        ));
    } else if given.is_empty() && !is_set(managed) {
        problems.push(format!(
            "{at}: no identity, give application_id, application_key and tenant_id, or \
             managed_identity_id"
        ));
    }
    if let Some(id) = managed.and_then(known_value)
        && !id.trim().eq_ignore_ascii_case("system")
        && !is_uuid(id.trim())
    {
        problems.push(format!(
            "{at}.managed_identity_id: `{id}` is neither `system` nor a UUID"
        ));
    }
    one_of(
        &format!("{at}.ingestion_type"),
        settings.get("ingestion_type"),
        &["queued", "managed"],
        &mut problems,
    );
    problems
}

/// `8-4-4-4-12` hexadecimal digits.
fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups
            .iter()
            .all(|g| g.chars().all(|c| c.is_ascii_hexdigit()))
}

/// The signals of the pipelines exporting to `id`.
fn signals_exporting_to<'a>(pipelines: &'a [Pipeline], id: &str) -> Vec<&'a str> {
    let mut signals: Vec<&str> = pipelines
        .iter()
        .filter(|p| p.exporters.iter().any(|e| e == id))
        .map(|p| p.signal.as_str())
        .collect();
    signals.sort_unstable();
    signals.dedup();
    signals
}

/// Every component's settings are what its documentation requires (the functions above, for
/// the components with rules beyond their option names).
fn documented_setting_problems(config: &Value) -> Vec<String> {
    let pipelines = pipelines(config);
    let mut problems = Vec::new();
    for kind in [Kind::Processor, Kind::Exporter, Kind::Connector] {
        let section = kind.section();
        for (id, settings) in entries(get(config, &[section])) {
            let at = format!("{section}.{id}");
            problems.extend(match (kind, type_of(&id)) {
                (Kind::Exporter, "loadbalancing") => {
                    loadbalancing_problems(&at, settings, &signals_exporting_to(&pipelines, &id))
                }
                (Kind::Processor, "tail_sampling") => tail_sampling_problems(&at, settings),
                (Kind::Connector, "spanmetrics") => span_metrics_problems(&at, settings),
                (Kind::Exporter, "azuredataexplorer") => {
                    azure_data_explorer_problems(&at, settings)
                }
                _ => Vec::new(),
            });
        }
    }
    problems
}

/// Connectors that count requests (spanmetrics, the Datadog connector's APM stats) get every
/// span: no pipeline exporting to one samples (tail_sampling), or they would count only the
/// traces kept.
fn request_counts_after_sampling(config: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    for pipeline in pipelines(config) {
        let Some(sampler) = pipeline
            .processors
            .iter()
            .find(|p| type_of(p) == "tail_sampling")
        else {
            continue;
        };
        for exporter in &pipeline.exporters {
            if is_defined(config, "connectors", exporter)
                && ["spanmetrics", "datadog"].contains(&type_of(exporter))
            {
                problems.push(format!(
                    "service.pipelines.{}: `{exporter}` comes after `{sampler}`, so it counts \
                     only the sampled traces",
                    pipeline.id
                ));
            }
        }
    }
    problems
}

// ---------------------------------------------------------------------------------------------
// The shipped files.
// ---------------------------------------------------------------------------------------------

#[test]
fn every_collector_file_parses_and_overlays_are_found() {
    // Parsing (in collector_files) also rejects duplicate keys, as the Collector does.
    let files = collector_files();
    let overlays: Vec<&str> = files
        .iter()
        .filter(|f| !f.is_base())
        .map(|f| f.name.as_str())
        .collect();
    assert!(!overlays.is_empty(), "no overlay found in {OVERLAY_DIR}/");
    assert!(
        overlays.iter().all(|name| name.starts_with("collector/")),
        "{overlays:?}"
    );
}

#[test]
fn every_pipeline_component_is_defined() {
    assert_every_configuration(undefined_components);
}

#[test]
fn every_pipeline_component_supports_its_signal() {
    assert_every_configuration(unsupported_signals);
}

#[test]
fn memory_limiter_is_first_and_batch_last_in_every_pipeline() {
    assert_every_configuration(misplaced_processors);
}

#[test]
fn every_extension_a_component_relies_on_is_enabled() {
    assert_every_configuration(extensions_not_enabled);
}

#[test]
fn receivers_and_extensions_listen_only_on_localhost_by_default() {
    assert_every_configuration(non_local_listeners);
}

#[test]
fn every_pipeline_detects_the_collectors_resource_without_overriding_the_services() {
    // README: "resource detection" in the base, kept by every overlay's merge: host and
    // environment attributes added, never replacing what the service reported.
    for (label, config) in configurations(&collector_files()) {
        let detection = get(&config, &["processors", "resourcedetection"])
            .unwrap_or_else(|| panic!("{label}: no resourcedetection processor"));
        assert_eq!(
            get(detection, &["detectors"]),
            Some(&serde_yaml_ng::from_str::<Value>("[env, system]").unwrap()),
            "{label}"
        );
        assert_eq!(
            get(detection, &["override"]),
            Some(&Value::Bool(false)),
            "{label}"
        );
        let pipelines = get(&config, &["service", "pipelines"])
            .and_then(Value::as_mapping)
            .unwrap_or_else(|| panic!("{label}: no pipelines"));
        for (name, pipeline) in pipelines {
            let processors = get(pipeline, &["processors"]).and_then(Value::as_sequence);
            assert!(
                processors.is_some_and(|processors| processors
                    .iter()
                    .any(|processor| processor.as_str() == Some("resourcedetection"))),
                "{label}: pipeline {name:?} does not detect the resource"
            );
        }
    }
}

#[test]
fn the_otlp_receivers_listen_on_localhost_4317_and_4318_by_default() {
    // What the README promises ("OTLP receivers on `localhost`", the service's default
    // `http://localhost:4318`), in the base and in every overlay's merge.
    for (label, config) in configurations(&collector_files()) {
        for (protocol, expected) in [("grpc", "localhost:4317"), ("http", "localhost:4318")] {
            let endpoint = get(
                &config,
                &["receivers", "otlp", "protocols", protocol, "endpoint"],
            )
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("{label}: no otlp {protocol} endpoint"));
            assert_eq!(with_defaults(endpoint).as_deref(), Ok(expected), "{label}");
        }
    }
}

#[test]
fn every_component_option_is_one_its_config_struct_has() {
    assert_every_configuration(unknown_options);
}

#[test]
fn every_env_reference_is_well_formed() {
    assert_every_file(|file| malformed_env_references(&file.value));
}

#[test]
fn no_secret_is_written_in_a_collector_file() {
    assert_every_file(|file| literal_secrets(&file.text, &file.value));
}

#[test]
fn overlay_exporters_queue_on_disk_where_they_can() {
    assert_every_file(|file| queue_problems(&file.value, !file.is_base()));
}

#[test]
fn every_file_gives_its_command_and_variables() {
    assert_every_file(|file| documentation_problems(&file.name, &file.text, &file.value));
}

#[test]
fn the_base_runs_alone_with_a_debug_exporter_for_each_signal() {
    let base = load(&crate_root().join(BASE_FILE));
    for signal in SIGNALS {
        let pipeline = pipelines(&base.value)
            .into_iter()
            .find(|p| p.id == *signal)
            .unwrap_or_else(|| panic!("no {signal} pipeline in {BASE_FILE}"));
        assert_eq!(pipeline.exporters, ["debug"], "{signal}");
        assert_eq!(pipeline.receivers, ["otlp"], "{signal}");
    }
}

#[test]
fn every_component_setting_is_what_its_documentation_requires() {
    assert_every_configuration(documented_setting_problems);
}

#[test]
fn connectors_counting_requests_see_every_span_before_sampling() {
    assert_every_configuration(request_counts_after_sampling);
}

const AGENT_TIER: &str = "collector/agent.yaml";
const SAMPLING_TIER: &str = "collector/sampling.yaml";
const SAMPLING_TIER_DATADOG: &str = "collector/sampling-datadog.yaml";
const FLEET_FILES: &[&str] = &[AGENT_TIER, SAMPLING_TIER, SAMPLING_TIER_DATADOG];

/// The configuration a command runs, by its files.
fn configuration_of(command: &[&str]) -> Value {
    let label = command.join(" + ");
    configurations(&collector_files())
        .into_iter()
        .find(|(l, _)| *l == label)
        .unwrap_or_else(|| panic!("no file gives the command {label}"))
        .1
}

fn pipeline(config: &Value, id: &str) -> Pipeline {
    pipelines(config)
        .into_iter()
        .find(|p| p.id == id)
        .unwrap_or_else(|| panic!("no pipeline {id}"))
}

#[test]
fn the_agent_tier_routes_spans_by_trace_id_and_forwards_metrics_and_logs() {
    // README, fleet: spans of one trace reach one sampling instance; metrics and logs need no
    // routing. The agent holds no backend credential.
    let agent = configuration_of(&[BASE_FILE, AGENT_TIER]);
    assert_eq!(pipeline(&agent, TRACES).exporters, ["loadbalancing"]);
    let balancer = get(&agent, &["exporters", "loadbalancing"]).expect("loadbalancing");
    assert_eq!(
        get(balancer, &["routing_key"]).and_then(Value::as_str),
        Some("traceID")
    );
    assert_eq!(
        get(balancer, &["resolver", "dns", "hostname"]).and_then(Value::as_str),
        Some("${env:SAMPLING_TIER_HOSTNAME}")
    );
    for signal in [METRICS, LOGS] {
        assert_eq!(
            pipeline(&agent, signal).exporters,
            ["otlp/sampling_tier"],
            "{signal}"
        );
    }
    let exporters = entries(get(&agent, &["exporters"]));
    assert!(
        exporters
            .iter()
            .all(|(id, _)| { ["debug", "loadbalancing", "otlp"].contains(&type_of(id)) }),
        "{:?}",
        exporters.iter().map(|(id, _)| id).collect::<Vec<_>>()
    );
}

/// The backend overlays: every overlay but the fleet's tiers.
fn backend_overlays() -> Vec<String> {
    collector_files()
        .into_iter()
        .filter(|f| !f.is_base() && !FLEET_FILES.contains(&f.name.as_str()))
        .map(|f| f.name)
        .collect()
}

#[test]
fn the_sampling_tier_stacks_on_every_backend_and_keeps_its_exporters() {
    // README, fleet: the sampling tier ships to the same backends as the single collector; its
    // overlay changes the processors and adds the RED pipeline, the backend's exporters stay.
    let backends = backend_overlays();
    assert!(!backends.is_empty());
    for backend in &backends {
        let alone = configuration_of(&[BASE_FILE, backend]);
        let datadog = backend == "collector/datadog.yaml";
        let stacked = if datadog {
            configuration_of(&[BASE_FILE, backend, SAMPLING_TIER, SAMPLING_TIER_DATADOG])
        } else {
            configuration_of(&[BASE_FILE, backend, SAMPLING_TIER])
        };
        for signal in SIGNALS {
            let mut expected = pipeline(&alone, signal).exporters;
            if datadog && *signal == TRACES {
                // The connector moves before sampling, into traces/red.
                expected.retain(|e| e != "datadog/connector");
                assert!(
                    pipeline(&stacked, "traces/red")
                        .exporters
                        .contains(&"datadog/connector".to_owned())
                );
            }
            assert_eq!(
                pipeline(&stacked, signal).exporters,
                expected,
                "{backend}: {signal}"
            );
        }
    }
}

#[test]
fn the_sampling_tier_counts_every_span_then_keeps_errors_slow_traces_and_a_share() {
    // README, fleet: spanmetrics before sampling; every error trace, every trace over 500 ms
    // and 10 % of the rest kept.
    let tier = configuration_of(&[BASE_FILE, SAMPLING_TIER]);
    let traces = pipeline(&tier, TRACES);
    let red = pipeline(&tier, "traces/red");
    assert_eq!(red.receivers, traces.receivers);
    assert_eq!(red.exporters, ["spanmetrics"]);
    assert!(!red.processors.iter().any(|p| p == "tail_sampling"));
    assert!(traces.processors.iter().any(|p| p == "tail_sampling"));
    assert!(
        pipeline(&tier, METRICS)
            .receivers
            .contains(&"spanmetrics".to_owned())
    );
    let policies: Vec<(String, String, Option<String>)> =
        get(&tier, &["processors", "tail_sampling", "policies"])
            .and_then(Value::as_sequence)
            .expect("policies")
            .iter()
            .map(|policy| {
                let ty = policy
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap()
                    .to_owned();
                let setting = match ty.as_str() {
                    "status_code" => get(policy, &["status_code", "status_codes"])
                        .map(|codes| serde_yaml_ng::to_string(codes).unwrap().trim().to_owned()),
                    "latency" => get(policy, &["latency", "threshold_ms"]).and_then(known_value),
                    "probabilistic" => {
                        get(policy, &["probabilistic", "sampling_percentage"]).and_then(known_value)
                    }
                    _ => None,
                };
                (policy["name"].as_str().unwrap().to_owned(), ty, setting)
            })
            .collect();
    let expected = [
        ("errors", "status_code", Some("- ERROR")),
        ("slow", "latency", Some("500")),
        ("share_of_the_rest", "probabilistic", Some("10")),
    ];
    assert_eq!(
        policies,
        expected.map(|(name, ty, setting)| (
            name.to_owned(),
            ty.to_owned(),
            setting.map(str::to_owned)
        ))
    );
}

// ---------------------------------------------------------------------------------------------
// The checker itself: each check fails on a broken config.
// ---------------------------------------------------------------------------------------------

/// A small config every check passes.
const MINIMAL: &str = r"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: ${env:OTLP_GRPC_ENDPOINT:-localhost:4317}
processors:
  memory_limiter:
    check_interval: 1s
    limit_percentage: 80
  batch: {}
exporters:
  debug:
    verbosity: basic
extensions:
  file_storage:
    directory: ${env:OTELCOL_STORAGE_DIR:-/var/lib/otelcol/file_storage}
service:
  extensions: [file_storage]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [memory_limiter, batch]
      exporters: [debug]
";

fn yaml(text: &str) -> Value {
    parse(text).unwrap_or_else(|e| panic!("test YAML: {e}\n{text}"))
}

/// MINIMAL with `overlay` merged in, the Collector's way.
fn minimal_with(overlay: &str) -> Value {
    merge(&yaml(MINIMAL), &yaml(overlay))
}

/// `check` passes MINIMAL and reports, on `broken`, a problem containing `expected`.
fn assert_reports(check: fn(&Value) -> Vec<String>, broken: &Value, expected: &str) {
    assert_eq!(check(&yaml(MINIMAL)), Vec::<String>::new(), "MINIMAL");
    let problems = check(broken);
    assert!(
        problems.iter().any(|p| p.contains(expected)),
        "expected a problem containing {expected:?}, got {problems:?}"
    );
}

#[test]
fn checker_merge_merges_maps_and_replaces_lists() {
    let merged = minimal_with(
        r"
processors:
  batch:
    timeout: 1s
service:
  pipelines:
    traces:
      exporters: [otlp/elsewhere]
",
    );
    assert_eq!(
        get(
            &merged,
            &["processors", "memory_limiter", "limit_percentage"]
        ),
        Some(&Value::from(80))
    );
    assert_eq!(
        get(&merged, &["processors", "batch", "timeout"]).and_then(Value::as_str),
        Some("1s")
    );
    let traces = &pipelines(&merged)[0];
    assert_eq!(traces.exporters, ["otlp/elsewhere"]);
    assert_eq!(traces.processors, ["memory_limiter", "batch"]);
}

#[test]
fn checker_reports_an_undefined_exporter() {
    let broken = minimal_with("service: {pipelines: {traces: {exporters: [otlp/missing]}}}");
    assert_reports(
        undefined_components,
        &broken,
        "`otlp/missing` is not defined",
    );
}

#[test]
fn checker_reports_an_undefined_extension() {
    let broken = minimal_with("service: {extensions: [file_storage, health_check]}");
    assert_reports(
        undefined_components,
        &broken,
        "`health_check` is not defined",
    );
}

#[test]
fn checker_reports_a_connector_with_one_end() {
    let broken = minimal_with(
        r"
connectors:
  datadog/connector: {}
service:
  pipelines:
    traces:
      exporters: [debug, datadog/connector]
",
    );
    assert_reports(
        undefined_components,
        &broken,
        "no pipeline receives from it",
    );
}

#[test]
fn checker_reports_a_malformed_pipeline() {
    let broken =
        minimal_with("service: {pipelines: {spans: {receivers: [otlp], exporters: [debug]}}}");
    assert_reports(undefined_components, &broken, "a pipeline id is a signal");
    let broken = minimal_with("service: {pipelines: {traces: {exporters: []}}}");
    assert_reports(undefined_components, &broken, "no exporter");
}

#[test]
fn checker_reports_an_exporter_in_a_pipeline_of_another_signal() {
    let broken = minimal_with(
        r"
exporters:
  awsxray: {}
service:
  pipelines:
    metrics:
      receivers: [otlp]
      processors: [memory_limiter, batch]
      exporters: [awsxray]
",
    );
    assert_reports(
        unsupported_signals,
        &broken,
        "`awsxray` does not support metrics",
    );
}

#[test]
fn checker_reports_a_type_missing_from_the_table() {
    let broken = minimal_with(
        r"
exporters:
  kafka: {}
service:
  pipelines:
    traces:
      exporters: [kafka]
",
    );
    assert_reports(
        unsupported_signals,
        &broken,
        "type `kafka` is not in this test's table",
    );
}

#[test]
fn checker_reports_a_connector_between_signals_it_does_not_join() {
    let broken = minimal_with(
        r"
connectors:
  datadog/connector: {}
service:
  pipelines:
    logs:
      receivers: [otlp]
      processors: [memory_limiter, batch]
      exporters: [datadog/connector]
    metrics:
      receivers: [datadog/connector]
      processors: [memory_limiter, batch]
      exporters: [debug]
",
    );
    assert_reports(unsupported_signals, &broken, "connectors.datadog/connector");
}

#[test]
fn checker_reports_batch_before_memory_limiter() {
    let broken =
        minimal_with("service: {pipelines: {traces: {processors: [batch, memory_limiter]}}}");
    assert_reports(misplaced_processors, &broken, "starts with `batch`");
    assert_reports(misplaced_processors, &broken, "ends with `memory_limiter`");
}

#[test]
fn checker_reports_an_overlay_that_replaces_the_processors_without_memory_limiter() {
    let broken = minimal_with("service: {pipelines: {traces: {processors: [batch]}}}");
    assert_reports(misplaced_processors, &broken, "not memory_limiter");
}

#[test]
fn checker_reports_a_storage_extension_left_out_of_service_extensions() {
    // An overlay that adds its authenticator but forgets to restate the base's extensions.
    let broken = minimal_with(
        r"
extensions:
  basicauth/cloud:
    client_auth: {username: '${env:USER_ID}', password: '${env:PASSWORD}'}
exporters:
  otlphttp/cloud:
    endpoint: ${env:CLOUD_ENDPOINT}
    auth: {authenticator: basicauth/cloud}
    sending_queue: {storage: file_storage}
service:
  extensions: [basicauth/cloud]
",
    );
    assert_reports(
        extensions_not_enabled,
        &broken,
        "exporters.otlphttp/cloud.sending_queue.storage: extension `file_storage` is not listed",
    );
    let broken = minimal_with("exporters: {otlphttp/cloud: {auth: {authenticator: oauth2client}}}");
    assert_reports(
        extensions_not_enabled,
        &broken,
        "extension `oauth2client` is not defined",
    );
}

#[test]
fn checker_reports_literal_secrets() {
    let check = |value: &Value| {
        literal_secrets(
            &serde_yaml_ng::to_string(value).expect("serializable"),
            value,
        )
    };
    let cases = [
        (
            "exporters: {datadog: {api: {key: 0123456789abcdef0123456789abcdef}}}",
            "exporters.datadog.api.key: a literal value",
        ),
        (
            "exporters: {datadog: {api: {key: '${env:DD_API_KEY:-0123}'}}}",
            "would be a literal secret",
        ),
        (
            "extensions: {basicauth/x: {client_auth: {username: u, password: hunter2}}}",
            "client_auth.password: a literal value",
        ),
        (
            "exporters: {otlphttp: {headers: {X-Api-Key: 'prefix-${env:K}'}}}",
            "headers.X-Api-Key: a literal value",
        ),
        (
            "exporters: {otlphttp: {endpoint: 'https://user:pa55word@example.com/otlp'}}",
            "a password in a URL",
        ),
        (
            "exporters: {otlphttp: {headers: {X-Id: AKIAABCDEFGHIJKLMNOP}}}",
            "an AWS access key id",
        ),
        (
            "exporters: {otlphttp: {headers: {X-Id: 'Bearer abcdefghijklmnopqrstuvwx'}}}",
            "an Authorization header value",
        ),
        (
            "exporters: {otlphttp: {headers: {X-Id: glc_abcdefghijklmnopqrstuvwxyz}}}",
            "a well-known prefix",
        ),
    ];
    for (overlay, expected) in cases {
        assert_reports(check, &minimal_with(overlay), expected);
    }
    // Comments are scanned too.
    let text = format!("{MINIMAL}\n# key: 0123456789abcdef0123456789abcdef\n");
    let problems = literal_secrets(&text, &yaml(&text));
    assert!(
        problems.iter().any(|p| p.contains("hexadecimal")),
        "{problems:?}"
    );
    // And a secret from the environment passes.
    let fine = minimal_with("exporters: {datadog: {api: {key: '${env:DD_API_KEY}'}}}");
    assert_eq!(check(&fine), Vec::<String>::new());
}

#[test]
fn checker_reports_receivers_listening_beyond_localhost() {
    let cases = [
        ("10.0.0.5:4317", "not localhost"),
        (
            "${env:OTLP_GRPC_ENDPOINT:-collector.internal:4317}",
            "not localhost",
        ),
        ("http://192.168.1.2:4318/", "not localhost"),
        ("0.0.0.0:4317", "every interface"),
        ("${env:OTLP_GRPC_ENDPOINT:-0.0.0.0:4317}", "every interface"),
        ("[::]:4317", "every interface"),
        ("::", "every interface"),
        (":4317", "every interface"),
        ("${env:OTLP_GRPC_ENDPOINT}", "has no default"),
    ];
    for (endpoint, expected) in cases {
        let broken = minimal_with(&format!(
            "receivers: {{otlp: {{protocols: {{grpc: {{endpoint: '{endpoint}'}}}}}}}}"
        ));
        assert_reports(non_local_listeners, &broken, expected);
    }
    let broken = minimal_with("extensions: {health_check: {endpoint: '0.0.0.0:13133'}}");
    assert_reports(
        non_local_listeners,
        &broken,
        "extensions.health_check.endpoint",
    );
    // Where an exporter sends is not a listen address.
    let fine = minimal_with("exporters: {otlp: {endpoint: '0.0.0.0:4317'}}");
    assert_eq!(non_local_listeners(&fine), Vec::<String>::new());
    for local in [
        "127.0.0.1:4317",
        "${env:OTLP_GRPC_ENDPOINT:-localhost:4317}",
    ] {
        let fine = minimal_with(&format!(
            "receivers: {{otlp: {{protocols: {{grpc: {{endpoint: '{local}'}}}}}}}}"
        ));
        assert_eq!(non_local_listeners(&fine), Vec::<String>::new(), "{local}");
    }
}

#[test]
fn checker_reports_misspelt_and_misplaced_options() {
    let cases = [
        // A misspelt option of a core component, at its top level and nested.
        (
            "processors: {batch: {timout: 1s}}",
            "processors.batch.timout: unknown option",
        ),
        (
            "receivers: {otlp: {protocols: {grpc: {endpont: 'localhost:4317'}}}}",
            "receivers.otlp.protocols.grpc.endpont: unknown option",
        ),
        (
            "receivers: {otlp: {protocols: {grcp: {endpoint: 'localhost:4317'}}}}",
            "receivers.otlp.protocols.grcp: unknown option",
        ),
        (
            "exporters: {otlp/x: {endpoint: 'x:4317', tls: {insecur: true}}}",
            "exporters.otlp/x.tls.insecur: unknown option",
        ),
        (
            "exporters: {otlphttp/x: {endpoint: 'https://x', sending_queue: {storag: file_storage}}}",
            "exporters.otlphttp/x.sending_queue.storag: unknown option",
        ),
        // A contrib component's option, nested and in a list item.
        (
            "exporters: {datadog: {api: {key: '${env:K}', sit: datadoghq.eu}}}",
            "exporters.datadog.api.sit: unknown option",
        ),
        (
            "exporters: {awsemf: {metric_declarations: [{dimensions: [[a]], metric_name_selector: [x]}]}}",
            "exporters.awsemf.metric_declarations.0.metric_name_selector: unknown option",
        ),
        (
            "extensions: {file_storage: {create_directories: true}}",
            "extensions.file_storage.create_directories: unknown option",
        ),
        // An option of another component (debug has no sending_queue at v0.135.0).
        (
            "exporters: {debug: {sending_queue: {enabled: true}}}",
            "exporters.debug.sending_queue: unknown option",
        ),
        // The top level, service and a pipeline.
        ("exporter: {debug: {}}", "exporter: unknown option"),
        (
            "service: {extension: [file_storage]}",
            "service.extension: unknown option",
        ),
        (
            "service: {pipelines: {traces: {exporter: [debug]}}}",
            "service.pipelines.traces.exporter: unknown option",
        ),
        // A map where a value goes, something else where a map goes.
        (
            "processors: {batch: {timeout: {s: 1}}}",
            "processors.batch.timeout: a map",
        ),
        (
            "exporters: {datadog: {api: datadoghq.com}}",
            "exporters.datadog.api: not a map",
        ),
        // A type the table does not know.
        (
            "extensions: {pprof: {}}",
            "extension type `pprof` is not in this test's table",
        ),
    ];
    for (overlay, expected) in cases {
        assert_reports(unknown_options, &minimal_with(overlay), expected);
    }
}

/// A path of keys and list indices into a config.
#[derive(Clone, Debug)]
enum Step {
    Key(String),
    Index(usize),
}

/// The paths of every key `opt` checks below `value` (not those of free maps or unchecked
/// structs, whose keys the test does not know).
fn checked_keys(value: &Value, opt: Opt, path: &mut Vec<Step>, found: &mut Vec<Vec<Step>>) {
    match (opt, value) {
        (Opt::Map(groups), Value::Mapping(map)) => {
            for (key, value) in map {
                let key = key_string(key);
                let Some((_, opt)) = groups
                    .iter()
                    .flat_map(|keys| keys.iter())
                    .find(|(known, _)| *known == key)
                else {
                    continue;
                };
                path.push(Step::Key(key));
                found.push(path.clone());
                checked_keys(value, *opt, path, found);
                path.pop();
            }
        }
        (Opt::ListOf(item), Value::Sequence(items)) => {
            for (i, value) in items.iter().enumerate() {
                path.push(Step::Index(i));
                checked_keys(value, *item, path, found);
                path.pop();
            }
        }
        _ => {}
    }
}

/// `config` with the last key of `path` renamed to `renamed`.
fn with_key_renamed(config: &Value, path: &[Step], renamed: &str) -> Value {
    let mut config = config.clone();
    let (last, parents) = path.split_last().expect("a path");
    let mut node = &mut config;
    for step in parents {
        node = match step {
            Step::Key(key) => node.get_mut(key.as_str()).expect("the path's key"),
            Step::Index(i) => node.get_mut(*i).expect("the path's index"),
        };
    }
    let Step::Key(key) = last else {
        panic!("a path ends with a key")
    };
    let map = node.as_mapping_mut().expect("a map");
    let value = map.remove(key.as_str()).expect("the key");
    map.insert(Value::from(renamed), value);
    config
}

/// The paths of every map key below `value`, list items included.
fn all_keys(value: &Value, path: &mut Vec<Step>, found: &mut Vec<Vec<Step>>) {
    match value {
        Value::Mapping(map) => {
            for (key, value) in map {
                path.push(Step::Key(key_string(key)));
                found.push(path.clone());
                all_keys(value, path, found);
                path.pop();
            }
        }
        Value::Sequence(items) => {
            for (i, value) in items.iter().enumerate() {
                path.push(Step::Index(i));
                all_keys(value, path, found);
                path.pop();
            }
        }
        _ => {}
    }
}

#[test]
fn checker_reports_a_misspelling_of_any_option_the_shipped_files_use() {
    // Every component option written in the shipped files, at any depth, is one the tables
    // check (none sits under a free or unchecked map), and a misspelling of it is refused: each
    // is misspelt in turn, in a copy of each configuration.
    let mut misspelt = 0;
    for (label, config) in configurations(&collector_files()) {
        for kind in Kind::ALL {
            for (id, settings) in entries(get(&config, &[kind.section()])) {
                let ty = component_type(kind, &id).expect("a known type");
                let mut keys = Vec::new();
                checked_keys(settings, Opt::Map(ty.options), &mut Vec::new(), &mut keys);
                let mut every_key = Vec::new();
                all_keys(settings, &mut Vec::new(), &mut every_key);
                assert_eq!(
                    format!("{keys:?}"),
                    format!("{every_key:?}"),
                    "{label}: {id} has options this test does not check: describe them in \
                     its table"
                );
                for key_path in keys {
                    let mut path =
                        vec![Step::Key(kind.section().to_owned()), Step::Key(id.clone())];
                    path.extend(key_path);
                    let Some(Step::Key(key)) = path.last() else {
                        unreachable!("a key path ends with a key")
                    };
                    let typo = format!("{key}s");
                    let broken = with_key_renamed(&config, &path, &typo);
                    let problems = unknown_options(&broken);
                    assert!(
                        problems
                            .iter()
                            .any(|p| p.contains(&format!(".{typo}: unknown option"))),
                        "{label}: misspelling {path:?} as {typo:?} went unnoticed: {problems:?}"
                    );
                    misspelt += 1;
                }
            }
        }
    }
    assert!(misspelt > 0, "no option misspelt");
}

#[test]
fn checker_reports_malformed_env_references() {
    let cases = [
        ("${DD_API_KEY}", "not an `${env:NAME}` reference"),
        ("${file:/run/secrets/key}", "not an `${env:NAME}` reference"),
        ("$DD_API_KEY", "a bare `$NAME`"),
        ("${env:1NAME}", "is not a variable name"),
        ("${env:MY-NAME}", "is not a variable name"),
        ("${env:NAME", "is never closed"),
        ("${env:NAME:-a$b}", "a default cannot hold"),
        ("${env:A:-${env:B}}", "a default cannot hold"),
    ];
    for (value, expected) in cases {
        let broken = minimal_with(&format!("exporters: {{debug: {{x: '{value}'}}}}"));
        assert_reports(malformed_env_references, &broken, expected);
    }
    for fine in [
        "'^http\\.server\\.request\\.duration$'",
        "'price: $$5'",
        "'${env:HOST:-localhost}:${env:PORT:-4317}'",
        "'${env:EMPTY_DEFAULT:-}'",
    ] {
        let value = minimal_with(&format!("exporters: {{debug: {{x: {fine}}}}}"));
        assert_eq!(
            malformed_env_references(&value),
            Vec::<String>::new(),
            "{fine}"
        );
    }
}

#[test]
fn checker_reads_defaults_of_env_references() {
    assert_eq!(
        with_defaults("${env:HOST:-localhost}:${env:PORT:-4317}").as_deref(),
        Ok("localhost:4317")
    );
    assert!(with_defaults("${env:HOST}:4317").is_err());
    assert!(!binds_every_interface("localhost:4317"));
    assert!(!binds_every_interface("127.0.0.1:4317"));
    assert!(!binds_every_interface("[::1]:4317"));
    assert!(binds_every_interface("http://0.0.0.0:4318/path"));
}

#[test]
fn checker_reports_exporters_without_a_persistent_queue() {
    let overlay = yaml("exporters: {datadog: {api: {key: '${env:DD_API_KEY}'}}}");
    assert!(
        queue_problems(&overlay, true)
            .iter()
            .any(|p| p.contains("no sending_queue.storage")),
    );
    let overlay = yaml("exporters: {awsxray: {sending_queue: {storage: file_storage}}}");
    assert!(
        queue_problems(&overlay, true)
            .iter()
            .any(|p| p.contains("has no sending_queue option")),
    );
    let fine = yaml(
        "exporters: {datadog: {sending_queue: {storage: file_storage}}, awsemf: {namespace: x}}",
    );
    assert_eq!(queue_problems(&fine, true), Vec::<String>::new());
    // The base's debug exporter may queue in memory.
    assert_eq!(queue_problems(&yaml(MINIMAL), false), Vec::<String>::new());
}

#[test]
fn checker_reports_an_overlay_without_its_command_or_variables() {
    let text = "# Example backend.\n#\n#   otelcol-contrib --config otel-collector.yaml --config collector/example.yaml\n#\n# Variables: EXAMPLE_ENDPOINT\nexporters:\n  otlp/example:\n    endpoint: ${env:EXAMPLE_ENDPOINT}\n    headers: {x-tenant: '${env:EXAMPLE_TENANT}'}\n";
    let problems = documentation_problems("collector/example.yaml", text, &yaml(text));
    assert_eq!(
        problems,
        ["the opening comment does not list EXAMPLE_TENANT"]
    );
    let problems = documentation_problems("collector/other.yaml", text, &yaml(text));
    assert!(
        problems
            .iter()
            .any(|p| p.contains("--config collector/other.yaml")),
        "{problems:?}"
    );
}

#[test]
fn checker_reads_the_commands_of_opening_comments() {
    let text = "# Two ways:\n#\n#   otelcol-contrib --config a.yaml\n#   X=... otelcol-contrib --config a.yaml --config b.yaml  --config c.yaml\n# otelcol-contrib alone is no command\nreceivers: {}\n# otelcol-contrib --config after.yaml\n";
    assert_eq!(
        commands(text),
        [
            vec!["a.yaml".to_owned()],
            vec![
                "a.yaml".to_owned(),
                "b.yaml".to_owned(),
                "c.yaml".to_owned()
            ],
        ]
    );
    // A tier stacked on another overlay is documented by its own command.
    let text = "#   otelcol-contrib --config otel-collector.yaml --config collector/b.yaml --config collector/tier.yaml\nservice: {}\n";
    assert_eq!(
        documentation_problems("collector/tier.yaml", text, &yaml(text)),
        Vec::<String>::new()
    );
    let problems = documentation_problems("collector/b.yaml", text, &yaml(text));
    assert!(
        problems
            .iter()
            .any(|p| p.contains("--config collector/b.yaml`")),
        "{problems:?}"
    );
}

/// The agent tier's exporter, with `settings` as its flow-style settings, in the pipelines of
/// `signals`.
fn with_balancer(settings: &str, signals: &[&str]) -> Value {
    let pipelines: Vec<String> = signals
        .iter()
        .map(|signal| {
            format!(
                "{signal}: {{receivers: [otlp], processors: [memory_limiter, batch], exporters: [loadbalancing]}}"
            )
        })
        .collect();
    minimal_with(&format!(
        "exporters: {{loadbalancing: {settings}}}\nservice: {{pipelines: {{{}}}}}",
        pipelines.join(", ")
    ))
}

#[test]
fn checker_reports_loadbalancing_settings_its_readme_refuses() {
    let fine =
        "{protocol: {otlp: {tls: {insecure: true}}}, resolver: {dns: {hostname: '${env:H}'}}}";
    assert_eq!(
        documented_setting_problems(&with_balancer(fine, &[TRACES, LOGS])),
        Vec::<String>::new()
    );
    let cases = [
        (
            "{resolver: {dns: {hostname: h}}}",
            "protocol.otlp: required",
        ),
        (
            "{protocol: {otlp: {endpoint: 'h:4317'}}, resolver: {dns: {hostname: h}}}",
            "protocol.otlp.endpoint: set by the resolver",
        ),
        ("{protocol: {otlp: {}}}", "resolver: required"),
        (
            "{protocol: {otlp: {}}, resolver: {dns: {hostname: h}, static: {hostnames: [h]}}}",
            "only one is used",
        ),
        (
            "{protocol: {otlp: {}}, resolver: {static: {hostnames: []}}}",
            "resolver.static.hostnames: required",
        ),
        (
            "{protocol: {otlp: {}}, resolver: {dns: {port: 4317}}}",
            "resolver.dns.hostname: required",
        ),
        (
            "{routing_key: traceId, protocol: {otlp: {}}, resolver: {dns: {hostname: h}}}",
            "`traceId` is not one of service, traceID, resource, metric",
        ),
        (
            "{routing_key: '${env:KEY:-span}', protocol: {otlp: {}}, resolver: {dns: {hostname: h}}}",
            "`span` is not one of",
        ),
    ];
    for (settings, expected) in cases {
        assert_reports(
            documented_setting_problems,
            &with_balancer(settings, &[TRACES]),
            expected,
        );
    }
    // traceID, also the default, routes no metrics; resource routes no spans.
    assert_reports(
        documented_setting_problems,
        &with_balancer(fine, &[TRACES, METRICS]),
        "routing_key: `traceID` cannot route metrics",
    );
    let by_resource =
        "{routing_key: resource, protocol: {otlp: {}}, resolver: {dns: {hostname: h}}}";
    assert_reports(
        documented_setting_problems,
        &with_balancer(by_resource, &[TRACES]),
        "`resource` cannot route traces",
    );
    assert_eq!(
        documented_setting_problems(&with_balancer(by_resource, &[METRICS])),
        Vec::<String>::new()
    );
    // Its routing_key is no credential; a misspelt option is still refused.
    assert_eq!(
        literal_secrets("", &with_balancer(fine, &[TRACES])),
        Vec::<String>::new()
    );
    assert_reports(
        unknown_options,
        &with_balancer(
            "{protocol: {otlp: {}}, resolver: {dns: {hostnme: h}}}",
            &[TRACES],
        ),
        "exporters.loadbalancing.resolver.dns.hostnme: unknown option",
    );
}

/// A sampling pipeline with `policies` (flow style).
fn with_policies(policies: &str) -> Value {
    minimal_with(&format!(
        "processors: {{tail_sampling: {{policies: {policies}}}}}\nservice: {{pipelines: {{traces: {{processors: [memory_limiter, tail_sampling, batch]}}}}}}"
    ))
}

#[test]
fn checker_reports_tail_sampling_policies_its_readme_refuses() {
    let fine = "[{name: e, type: status_code, status_code: {status_codes: [ERROR]}}, {name: s, type: latency, latency: {threshold_ms: '${env:T:-500}'}}, {name: p, type: probabilistic, probabilistic: {sampling_percentage: 10}}, {name: a, type: always_sample}]";
    assert_eq!(
        documented_setting_problems(&with_policies(fine)),
        Vec::<String>::new()
    );
    let cases = [
        ("[]", "policies: required"),
        ("[{type: always_sample}]", "policies.0.name: required"),
        (
            "[{name: a, type: always_sample}, {name: a, type: always_sample}]",
            "`a` names two policies",
        ),
        ("[{name: a}]", "policies.0.type: required"),
        (
            "[{name: a, type: error}]",
            "`error` is not one of always_sample, latency",
        ),
        (
            "[{name: a, type: latency}]",
            "policies.0.latency: required by type latency",
        ),
        (
            "[{name: a, type: latency, latency: {upper_threshold_ms: 900}}]",
            "latency.threshold_ms: required",
        ),
        (
            "[{name: a, type: latency, probabilistic: {sampling_percentage: 5}, latency: {threshold_ms: 5}}]",
            "policies.0.probabilistic: settings of another type than latency",
        ),
        (
            "[{name: a, type: probabilistic, probabilistic: {sampling_percentage: 0}}]",
            "above 0 and at most 100",
        ),
        (
            "[{name: a, type: probabilistic, probabilistic: {sampling_percentage: '${env:P:-150}'}}]",
            "above 0 and at most 100",
        ),
        (
            "[{name: a, type: probabilistic, probabilistic: {hash_salt: x}}]",
            "sampling_percentage: required",
        ),
        (
            "[{name: a, type: status_code, status_code: {status_codes: [Error]}}]",
            "`Error` is not OK, ERROR or UNSET",
        ),
        (
            "[{name: a, type: status_code, status_code: {}}]",
            "status_code.status_codes: required",
        ),
    ];
    for (policies, expected) in cases {
        assert_reports(
            documented_setting_problems,
            &with_policies(policies),
            expected,
        );
    }
    let broken = minimal_with(
        "processors: {tail_sampling: {decision_wait: 10s}}\nservice: {pipelines: {traces: {processors: [memory_limiter, tail_sampling, batch]}}}",
    );
    assert_reports(documented_setting_problems, &broken, "policies: required");
    assert_reports(
        unknown_options,
        &with_policies("[{name: a, type: latency, latency: {threshold: 5}}]"),
        "policies.0.latency.threshold: unknown option",
    );
    // Sampling only has traces.
    let broken = minimal_with(
        "processors: {tail_sampling: {policies: [{name: a, type: always_sample}]}}\nservice: {pipelines: {logs: {receivers: [otlp], processors: [memory_limiter, tail_sampling, batch], exporters: [debug]}}}",
    );
    assert_reports(
        unsupported_signals,
        &broken,
        "processor `tail_sampling` does not support logs",
    );
}

/// spanmetrics with `settings` (flow style), from the traces pipeline into a metrics one.
fn with_span_metrics(settings: &str) -> Value {
    minimal_with(&format!(
        "connectors: {{spanmetrics: {settings}}}\nservice: {{pipelines: {{traces: {{exporters: [debug, spanmetrics]}}, metrics: {{receivers: [spanmetrics], processors: [memory_limiter, batch], exporters: [debug]}}}}}}"
    ))
}

#[test]
fn checker_reports_span_metrics_settings_and_pipelines_its_readme_refuses() {
    let fine = "{histogram: {unit: s, explicit: {buckets: [5ms, 2.5s, 1m30s]}}, dimensions: [{name: http.route}], aggregation_temporality: AGGREGATION_TEMPORALITY_DELTA}";
    for check in [
        documented_setting_problems,
        undefined_components,
        unsupported_signals,
        request_counts_after_sampling,
    ] {
        assert_eq!(check(&with_span_metrics(fine)), Vec::<String>::new());
    }
    let cases = [
        (
            "{histogram: {explicit: {}, exponential: {max_size: 160}}}",
            "explicit and exponential, it must be either",
        ),
        ("{histogram: {unit: sec}}", "`sec` is not one of ms, s"),
        (
            "{histogram: {explicit: {buckets: [5ms, '100']}}}",
            "`100` is not a duration",
        ),
        (
            "{aggregation_temporality: delta}",
            "`delta` is not one of AGGREGATION_TEMPORALITY_CUMULATIVE",
        ),
        (
            "{dimensions: [{default: GET}]}",
            "dimensions.0.name: required",
        ),
    ];
    for (settings, expected) in cases {
        assert_reports(
            documented_setting_problems,
            &with_span_metrics(settings),
            expected,
        );
    }
    // A connector from traces to metrics: not from metrics, not into traces, and with both ends.
    let broken = minimal_with(
        "connectors: {spanmetrics: {}}\nservice: {pipelines: {metrics: {receivers: [otlp], processors: [memory_limiter, batch], exporters: [spanmetrics]}, traces: {receivers: [spanmetrics]}}}",
    );
    assert_reports(unsupported_signals, &broken, "connectors.spanmetrics");
    let broken = minimal_with(
        "connectors: {spanmetrics: {}}\nservice: {pipelines: {traces: {exporters: [debug, spanmetrics]}}}",
    );
    assert_reports(
        undefined_components,
        &broken,
        "no pipeline receives from it",
    );
    // After sampling, it would count only the traces kept.
    let broken = minimal_with(
        "connectors: {spanmetrics: {}}\nprocessors: {tail_sampling: {policies: [{name: a, type: always_sample}]}}\nservice: {pipelines: {traces: {processors: [memory_limiter, tail_sampling, batch], exporters: [debug, spanmetrics]}, metrics: {receivers: [spanmetrics], processors: [memory_limiter, batch], exporters: [debug]}}}",
    );
    assert_reports(
        request_counts_after_sampling,
        &broken,
        "`spanmetrics` comes after `tail_sampling`, so it counts only the sampled traces",
    );
}

#[test]
fn checker_reports_azure_data_explorer_settings_its_readme_refuses() {
    let with = |settings: &str| {
        minimal_with(&format!(
            "exporters: {{azuredataexplorer: {settings}}}\nservice: {{pipelines: {{traces: {{exporters: [azuredataexplorer]}}}}}}"
        ))
    };
    for fine in [
        "{cluster_uri: '${env:U}', application_id: '${env:I}', application_key: '${env:K}', tenant_id: '${env:T}', ingestion_type: managed}",
        "{cluster_uri: u, managed_identity_id: system}",
        "{cluster_uri: u, managed_identity_id: 0f8fad5b-d9cb-469f-a165-70867728950e}",
    ] {
        assert_eq!(
            documented_setting_problems(&with(fine)),
            Vec::<String>::new(),
            "{fine}"
        );
    }
    let cases = [
        ("{managed_identity_id: system}", "cluster_uri: required"),
        ("{cluster_uri: u}", "no identity"),
        (
            "{cluster_uri: u, application_id: i, tenant_id: t}",
            "application_id, tenant_id without application_key",
        ),
        (
            "{cluster_uri: u, managed_identity_id: my-identity}",
            "`my-identity` is neither `system` nor a UUID",
        ),
        (
            "{cluster_uri: u, managed_identity_id: system, ingestion_type: streaming}",
            "`streaming` is not one of queued, managed",
        ),
        (
            "{cluster_uri: u, managed_identity_id: system, ingestion_type: '${env:T:-batch}'}",
            "`batch` is not one of queued, managed",
        ),
    ];
    for (settings, expected) in cases {
        assert_reports(documented_setting_problems, &with(settings), expected);
    }
    assert_reports(
        unknown_options,
        &with("{cluster_uri: u, database: x}"),
        "exporters.azuredataexplorer.database: unknown option",
    );
    assert_reports(
        |config| literal_secrets("", config),
        &with("{cluster_uri: u, application_key: s3cret}"),
        "application_key: a literal value",
    );
}

#[test]
fn the_azure_overlay_lands_every_signal_in_azure_data_explorer() {
    // README, PowerBI: traces, metrics and logs in the three tables its KQL reads.
    let azure = configuration_of(&[BASE_FILE, "collector/azure.yaml"]);
    for signal in SIGNALS {
        assert_eq!(
            pipeline(&azure, signal).exporters,
            ["azuredataexplorer"],
            "{signal}"
        );
    }
    let exporter = get(&azure, &["exporters", "azuredataexplorer"]).expect("the exporter");
    for (key, table) in [
        ("traces_table_name", "OTELTraces"),
        ("metrics_table_name", "OTELMetrics"),
        ("logs_table_name", "OTELLogs"),
    ] {
        assert_eq!(get(exporter, &[key]).and_then(Value::as_str), Some(table));
    }
}

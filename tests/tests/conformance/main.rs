//! The HTTP API of `docs/http-api.md`, checked over real HTTP against every
//! framework's demo: each case runs once per framework, as a test named
//! `{framework}::{case}`.
//!
//! The cases live in one module per topic of the document; this file only
//! declares them and generates, for each framework, a module with one test
//! per case, and in it a module `http2` running a selection of the cases
//! again over HTTP/2 (prior knowledge, [`sse_tests::over_http2`]) (the harness, [`sse_tests::TestServer`], is in `tests/src/`;
//! what the cases share, in [`common`]).

mod admin;
mod admin_page;
mod auth;
mod common;
mod cors;
mod demo;
mod errors;
mod limits;
mod metrics;
mod nats;
mod presence;
mod publish;
mod rate_limits;
mod redis;
mod replay;
mod stream;
mod targeting;

/// Generates, for one framework, a module with one test per case.
macro_rules! conformance_tests {
    ($framework:ident, $serve:path) => {
        mod $framework {
            conformance_tests!(@cases $serve;
                stream::stream_headers,
                stream::never_compressed,
                stream::first_frames,
                stream::heartbeats_keep_idle_streams_alive,
                targeting::targets_reach_exactly_their_connections,
                targeting::channels_joined_at_connect,
                targeting::channels_joined_and_left_at_runtime,
                targeting::subscribe_unknown_client_is_not_found,
                targeting::exclusions_skip_users_and_clients,
                publish::data_round_trip,
                publish::exact_event_bytes,
                publish::published_event_fields,
                publish::exclusions_and_replay_are_validated,
                publish::idempotency_key_publishes_once,
                publish::write_batch_window_keeps_every_frame,
                rate_limits::publish_rate_answers_429_per_publisher,
                publish::priority_and_key,
                replay::replay_after_last_event_id_header,
                replay::replay_after_last_event_id_query,
                replay::header_wins_over_query,
                replay::reset_for_unknown_ids,
                replay::history_size_bounds_replay,
                replay::replay_seam_has_no_gap_or_duplicate,
                replay::live_only_events_are_not_replayed,
                replay::events_for_one_client_take_no_place_in_the_history,
                limits::per_user_limit_closes_oldest,
                limits::global_limit_answers_overloaded,
                limits::max_lifetime_closes_streams,
                limits::slow_client_is_closed,
                errors::publish_rejects_bad_input,
                errors::publish_rejects_oversized_body,
                errors::unknown_paths_and_wrong_methods,
                admin::dropped_client_is_cleaned_up,
                admin::delete_connection,
                admin::stats_fields,
                admin::cluster_stats_of_a_single_instance,
                admin::connection_listing,
                admin::publish_token_guards_publish_and_admin,
                admin_page::admin_page_is_open_html,
                admin_page::admin_feed_is_guarded,
                admin_page::admin_snapshot_matches_stats,
                admin_page::admin_viewers_are_not_connections,
                admin_page::admin_feed_takes_the_admin_role,
                demo::shutdown_closes_open_streams,
                demo::demo_page,
                demo::probes_and_readiness_flip_while_draining,
                metrics::metrics_route_is_guarded_prometheus_text,
                auth::jwt_missing_or_invalid_token_is_unauthorized,
                auth::jwt_token_from_header_query_or_cookie,
                auth::jwt_channels_claim_limits_channels,
                auth::jwt_expiry_ends_the_stream,
                auth::jwt_rs256_public_key,
                auth::jwt_roles_publish_and_administer,
                cors::cors_listed_origins_with_credentials,
                cors::cors_unset_sends_no_cors_headers,
                limits::per_address_limit,
                limits::idle_timeout_closes_quiet_streams,
                limits::memory_budgets_bound_history_queues_and_frames,
                presence::presence_notices_reach_other_members_once_per_user,
                presence::presence_query_route,
                redis::redis_targets_across_instances,
                redis::redis_resume_on_another_instance,
                redis::redis_sharded_targets_and_resume,
                redis::redis_presence_across_instances,
                redis::redis_idempotency_key_spans_instances,
                redis::redis_cluster_stats_across_instances,
                nats::nats_targets_across_instances,
                nats::nats_resume_on_another_instance,
                nats::nats_idempotency_key_spans_instances,
                nats::nats_cluster_stats_are_not_shared,
            );

            /// Cases run again over HTTP/2 with prior knowledge.
            mod http2 {
                conformance_tests!(@http2 $serve;
                    stream::stream_headers,
                    stream::first_frames,
                    stream::heartbeats_keep_idle_streams_alive,
                    targeting::targets_reach_exactly_their_connections,
                    targeting::channels_joined_and_left_at_runtime,
                    targeting::exclusions_skip_users_and_clients,
                    publish::data_round_trip,
                    publish::published_event_fields,
                    publish::idempotency_key_publishes_once,
                    replay::replay_after_last_event_id_header,
                    replay::reset_for_unknown_ids,
                    replay::replay_seam_has_no_gap_or_duplicate,
                    limits::per_user_limit_closes_oldest,
                    limits::max_lifetime_closes_streams,
                    errors::publish_rejects_bad_input,
                    redis::redis_targets_across_instances,
                    redis::redis_resume_on_another_instance,
                );
            }
        }
    };
    (@http2 $serve:path; $($module:ident :: $case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread")]
            async fn $case() {
                sse_tests::over_http2(crate::$module::$case($serve)).await;
            }
        )*
    };
    (@cases $serve:path; $($module:ident :: $case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread")]
            async fn $case() {
                crate::$module::$case($serve).await;
            }
        )*
    };
}

conformance_tests!(axum, sse_examples::axum_demo::serve);
conformance_tests!(warp, sse_examples::warp_demo::serve);
conformance_tests!(poem, sse_examples::poem_demo::serve);

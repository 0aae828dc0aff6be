//! `argosy routes list|show`: routed services, and where every region's
//! ingresses send one service's requests, with the weights and why.

use super::client::{ClientArgs, connect, status_error};
use super::output::{self, Output, table};
use crate::dto::{RoutesJson, ServiceRoutesJson};
use argosy_proto::v1::{self as pb, routing_service_client::RoutingServiceClient};
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub(super) enum RoutesCommand {
    /// Every routed service: hostnames, paths, regional policy, and the
    /// regions that can serve it.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// One service's routes: per region, every allocation's share of the
    /// requests and the reason for it, and what the ingresses measured.
    Show {
        service: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

pub(super) async fn routes(command: RoutesCommand) -> anyhow::Result<()> {
    match command {
        RoutesCommand::List { client } => {
            let connection = connect(&client)?;
            let mut api = connection.client(RoutingServiceClient::with_interceptor);
            let listed: RoutesJson = api
                .list_routes(pb::ListRoutesRequest {})
                .await
                .map_err(status_error)?
                .into_inner()
                .into();
            match connection.output {
                Output::Json => println!("{}", output::json(&listed)?),
                Output::Table => {
                    let rows = listed
                        .routes
                        .into_iter()
                        .map(|r| {
                            vec![
                                r.service,
                                r.hostnames.join(", "),
                                r.paths.join(", "),
                                r.regions,
                                r.serving.join(", "),
                                r.not_serving.join(", "),
                            ]
                        })
                        .collect();
                    println!(
                        "{}",
                        table(
                            &[
                                "service",
                                "hostnames",
                                "paths",
                                "regions",
                                "serving",
                                "not serving"
                            ],
                            rows
                        )
                    );
                    if !listed.latencies.is_empty() {
                        let rows = listed
                            .latencies
                            .into_iter()
                            .map(|l| vec![l.from_region, l.to_region, format!("{:.2}", l.rtt_ms)])
                            .collect();
                        println!(
                            "\nmeasured round trips\n{}",
                            table(&["from", "to", "ms"], rows)
                        );
                    }
                }
            }
        }
        RoutesCommand::Show { service, client } => {
            let connection = connect(&client)?;
            let mut api = connection.client(RoutingServiceClient::with_interceptor);
            let routes: ServiceRoutesJson = api
                .show_routes(pb::ShowRoutesRequest { service })
                .await
                .map_err(status_error)?
                .into_inner()
                .into();
            match connection.output {
                Output::Json => println!("{}", output::json(&routes)?),
                Output::Table => print!("{}", show_text(&routes)),
            }
        }
    }
    Ok(())
}

/// The human form of `routes show`.
fn show_text(routes: &ServiceRoutesJson) -> String {
    let mut text = format!(
        "{}: {} {}\nregions: {}; tls: {}\n",
        routes.service,
        routes.hostnames.join(", "),
        routes.paths.join(", "),
        routes.regions,
        routes.tls
    );
    for region in &routes.by_region {
        text.push_str(&format!(
            "\n{}{}\n",
            region.explanation,
            if region.serving { "" } else { " (answers 503)" }
        ));
        let rows: Vec<Vec<String>> = region
            .backends
            .iter()
            .map(|b| {
                vec![
                    match (b.weight_ppm, b.standby) {
                        (0, true) => "standby".to_owned(),
                        (0, false) => "draining".to_owned(),
                        _ => format!("{:.1} %", b.weight_percent),
                    },
                    format!("rev {}", b.revision),
                    b.allocation.clone(),
                    b.host.clone(),
                    b.region.clone(),
                    b.address.clone(),
                ]
            })
            .collect();
        if !rows.is_empty() {
            text.push_str(&table(
                &[
                    "weight",
                    "revision",
                    "allocation",
                    "host",
                    "region",
                    "address",
                ],
                rows,
            ));
            text.push('\n');
        }
    }
    if !routes.traffic.is_empty() {
        text.push_str("\nlast 5 minutes through the ingresses\n");
        let rows = routes
            .traffic
            .iter()
            .map(|t| {
                vec![
                    format!("rev {}", t.revision),
                    t.requests.to_string(),
                    t.errors.to_string(),
                    format!("{:.1}", t.p50_ms),
                    format!("{:.1}", t.p99_ms),
                ]
            })
            .collect();
        text.push_str(&table(
            &["revision", "requests", "errors", "p50 ms", "p99 ms"],
            rows,
        ));
        text.push('\n');
    }
    text
}

//! The floor of bkvy's own stack: an actix-web server with one worker that forwards every
//! `POST` to one upstream URL with awc and hands the answer back, nothing else (no parsing,
//! no routing, no rate limits, no logging, no metrics).
//!
//! `benches/load.sh` runs it on bkvy's core, measured the same way as bkvy (`RUN_FLOOR=1`),
//! so the table shows what the HTTP server and client that bkvy is built on cost by
//! themselves on this machine, and bkvy's own work is the difference to that row. It is a
//! `harness = false` bench target so it is built only for benchmarking.
//!
//! `proxy_floor --listen 127.0.0.1:18404 --upstream http://127.0.0.1:18401/v1/chat/completions`

use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use bytes::Bytes;
use clap::Parser;

/// Pass-through proxy on actix-web + awc (the stack floor of `benches/load.sh`).
#[derive(Debug, Parser)]
#[command(name = "proxy_floor")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:18404")]
    listen: String,
    /// Where every request is forwarded (method POST, same body, same Authorization).
    #[arg(long)]
    upstream: Option<String>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

async fn forward(
    req: HttpRequest,
    body: Bytes,
    upstream: web::Data<String>,
    client: web::Data<awc::Client>,
) -> HttpResponse {
    let mut call = client
        .post(upstream.as_str())
        .insert_header(("content-type", "application/json"));
    if let Some(auth) = req.headers().get("authorization") {
        call = call.insert_header(("authorization", auth.clone()));
    }
    let sent = tokio::time::timeout(Duration::from_secs(20), async {
        let mut res = call.send_body(body).await.map_err(|e| e.to_string())?;
        let bytes = res.body().await.map_err(|e| e.to_string())?;
        Ok::<_, String>((res.status(), bytes))
    })
    .await;
    match sent {
        Ok(Ok((status, bytes))) => HttpResponse::build(status)
            .content_type("application/json")
            .body(bytes),
        Ok(Err(e)) => HttpResponse::BadGateway().body(e),
        Err(_) => HttpResponse::GatewayTimeout().finish(),
    }
}

#[allow(clippy::print_stderr)] // a command-line tool's message
fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let Some(upstream) = args.upstream else {
        // `cargo bench` runs every bench target; without an upstream there is nothing to do.
        eprintln!("proxy_floor: --upstream URL is required (run by benches/load.sh)");
        return Ok(());
    };
    let upstream = web::Data::new(upstream);
    actix_web::rt::System::new().block_on(async move {
        HttpServer::new(move || {
            let client = awc::Client::builder()
                .timeout(Duration::from_secs(20))
                .finish();
            App::new()
                .app_data(upstream.clone())
                .app_data(web::Data::new(client))
                .default_service(web::post().to(forward))
        })
        .workers(1)
        .bind(&args.listen)?
        .run()
        .await
    })
}

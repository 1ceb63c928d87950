//! `quic-perf`: the ceiling of one QUIC stream between two processes, for setting beside a
//! swarm fetch on the same path. Plain quinn with a self-signed certificate and nothing of
//! swarm's (no disk, no hashing, no chunks); the flow-control windows are swarm's connection
//! window (16 MiB), so that both may keep as much in flight, the UDP socket buffers and the
//! largest datagrams (`large_datagrams`) are swarm's, and the congestion controller is swarm's (`transport::PEER_CONGESTION`;
//! SWARM_CONGESTION overrides both alike). quinn's own perf tool is not on crates.io, and these
//! machines reach nothing else.
//!
//!     quic-perf serve --listen 127.0.0.1:7400 --cert /tmp/perf.der
//!     quic-perf fetch --from 127.0.0.1:7400 --cert /tmp/perf.der --size 1GiB

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use bytesize::ByteSize;
use clap::{Parser, Subcommand};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{Endpoint, TransportConfig, VarInt};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use swarm_proto::congestion::Congestion;
use swarm_proto::large_datagrams;

/// Flow-control windows: swarm's per-connection window.
const WINDOW: u32 = 16 * 1024 * 1024;
const SERVER_NAME: &str = "quic-perf";

#[derive(Parser)]
#[command(about = "One QUIC stream's throughput between two processes")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Sends as many bytes as each stream asks for, until stopped.
    Serve {
        #[arg(long)]
        listen: SocketAddr,
        /// Where to write the self-signed certificate the fetcher must trust.
        #[arg(long)]
        cert: PathBuf,
    },
    /// Asks for `size` bytes on one stream and prints how fast they came.
    Fetch {
        #[arg(long)]
        from: SocketAddr,
        #[arg(long)]
        cert: PathBuf,
        #[arg(long, default_value = "1GiB")]
        size: ByteSize,
    },
}

/// The settings of a connection with `peer`: swarm's windows, controller and path MTU search.
fn transport(peer: SocketAddr) -> Arc<TransportConfig> {
    let mut config = TransportConfig::default();
    config
        .stream_receive_window(VarInt::from_u32(WINDOW))
        .receive_window(VarInt::from_u32(WINDOW))
        .send_window(u64::from(WINDOW))
        .mtu_discovery_config(Some(large_datagrams::mtu_discovery(peer)))
        .congestion_controller_factory(
            Congestion::from_env_or(swarm_proto::transport::PEER_CONGESTION).factory(Some(peer)),
        );
    Arc::new(config)
}

/// An endpoint on a socket with swarm's buffers.
fn endpoint(server: Option<quinn::ServerConfig>, addr: SocketAddr) -> Result<Endpoint> {
    let socket = swarm_proto::transport::bind_udp(addr)?;
    Ok(large_datagrams::endpoint(server, socket)?)
}

#[tokio::main]
async fn main() -> Result<()> {
    match Args::parse().command {
        Command::Serve { listen, cert } => serve(listen, cert).await,
        Command::Fetch { from, cert, size } => fetch(from, cert, size.as_u64()).await,
    }
}

async fn serve(listen: SocketAddr, cert_path: PathBuf) -> Result<()> {
    let signed = rcgen::generate_simple_self_signed(vec![SERVER_NAME.into()])?;
    let cert = CertificateDer::from(signed.cert.der().to_vec());
    std::fs::write(&cert_path, &cert).with_context(|| format!("cannot write {}", cert_path.display()))?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(signed.key_pair.serialize_der()));
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)?;
    let config = quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(tls)?));
    let endpoint = endpoint(Some(config.clone()), listen)?;
    println!("{}", endpoint.local_addr()?);
    while let Some(incoming) = endpoint.accept().await {
        let mut config = config.clone();
        config.transport_config(transport(incoming.remote_address()));
        tokio::spawn(async move {
            let Ok(connecting) = incoming.accept_with(Arc::new(config)) else {
                return;
            };
            let Ok(connection) = connecting.await else { return };
            while let Ok((mut send, mut recv)) = connection.accept_bi().await {
                tokio::spawn(async move {
                    let mut asked = [0u8; 8];
                    if recv.read_exact(&mut asked).await.is_err() {
                        return;
                    }
                    let mut left = u64::from_le_bytes(asked);
                    let block = vec![0x5a; 1024 * 1024];
                    while left > 0 {
                        let n = left.min(block.len() as u64) as usize;
                        if send.write_all(&block[..n]).await.is_err() {
                            return;
                        }
                        left -= n as u64;
                    }
                    let _ = send.finish();
                    let _ = send.stopped().await;
                });
            }
        });
    }
    Ok(())
}

async fn fetch(from: SocketAddr, cert_path: PathBuf, size: u64) -> Result<()> {
    let cert = std::fs::read(&cert_path).with_context(|| format!("cannot read {}", cert_path.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(cert))?;
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut config = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls)?));
    config.transport_config(transport(from));
    let mut endpoint = endpoint(None, "0.0.0.0:0".parse()?)?;
    endpoint.set_default_client_config(config);
    let connection = endpoint.connect(from, SERVER_NAME)?.await?;
    let start = Instant::now();
    let (mut send, mut recv) = connection.open_bi().await?;
    send.write_all(&size.to_le_bytes()).await?;
    send.finish()?;
    let mut buffer = vec![0u8; 1024 * 1024];
    let mut received = 0u64;
    while let Some(n) = recv.read(&mut buffer).await? {
        received += n as u64;
    }
    let seconds = start.elapsed().as_secs_f64();
    anyhow::ensure!(received == size, "got {received} of {size} bytes");
    println!(
        "quic-perf: {received} bytes in {seconds:.2} s: {:.1} MB/s",
        received as f64 / seconds / 1e6
    );
    connection.close(0u32.into(), b"done");
    endpoint.wait_idle().await;
    Ok(())
}

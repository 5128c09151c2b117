//! `alphapulse bench ingest` (placeholder until the engine lands).
#[derive(Debug, Clone, clap::Args)]
pub struct IngestBenchArgs {}
pub fn run(_args: IngestBenchArgs, _config: crate::config::Config) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}

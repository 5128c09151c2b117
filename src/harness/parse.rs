//! `alphapulse bench parse` (placeholder until the parser branch lands).
#[derive(Debug, Clone, clap::Args)]
pub struct ParseBenchArgs {}
pub fn run(_args: ParseBenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}

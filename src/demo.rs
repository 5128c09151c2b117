//! `alphapulse demo` (placeholder until the engine lands).
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {}
pub fn run(_args: DemoArgs, _config: crate::config::Config) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}

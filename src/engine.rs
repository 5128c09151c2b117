//! Starts every role on its core (placeholder until the engine lands).
pub fn run(_config: crate::config::Config) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}

//! Binance-compatible exchange simulator (placeholder until the simulator branch lands).
#[derive(Debug, Clone, clap::Args)]
pub struct SimulateArgs {}
pub fn run_cli(_args: SimulateArgs) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}

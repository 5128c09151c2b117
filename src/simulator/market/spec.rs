//! Seeded randomness and the static description of a simulated symbol.

use crate::market::Symbol;

use super::{UNIT, UNIT_SCALE};

/// A small, fast, seedable random source (SplitMix64): the model's only source of
/// randomness, identical on every platform and build.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.0)
    }

    /// Uniform in `0..n` (`n > 0`; returns 0 for `n == 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Approximately standard normal (Irwin–Hall of four uniforms): only +, −, ×, so
    /// the result is bit-identical everywhere.
    pub fn normal(&mut self) -> f64 {
        let sum = self.unit() + self.unit() + self.unit() + self.unit();
        (sum - 2.0) * 1.732_050_807_568_877_2
    }
}

/// The SplitMix64 finaliser, also used to derive independent seeds.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Static description of a simulated symbol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SymbolSpec {
    pub symbol: Symbol,
    pub base_asset: String,
    pub quote_asset: String,
    /// Decimals of the tick size (BTCUSDT: 2, tick 0.01).
    pub price_decimals: u32,
    /// Decimals of the step size (BTCUSDT: 5, step 0.00001).
    pub qty_decimals: u32,
    /// Starting price in units of 10^-8.
    pub initial_price: i64,
}

/// Quote assets recognised when splitting a symbol into base and quote.
const QUOTE_ASSETS: [&str; 10] = [
    "FDUSD", "USDT", "USDC", "TUSD", "BUSD", "BTC", "ETH", "BNB", "EUR", "TRY",
];

impl SymbolSpec {
    /// Realistic decimals and magnitudes for well-known symbols; any other symbol gets
    /// 4 price / 2 quantity decimals and a price between 1 and 100 derived from its name.
    pub fn for_symbol(symbol: Symbol) -> SymbolSpec {
        // (tick decimals, step decimals, starting price in units of 10^-8)
        let (price_decimals, qty_decimals, initial_price) = match symbol.as_str() {
            "BTCUSDT" | "BTCFDUSD" | "BTCUSDC" => (2, 5, 60_000 * UNIT),
            "ETHUSDT" | "ETHUSDC" => (2, 4, 3_000 * UNIT),
            "BNBUSDT" => (2, 3, 550 * UNIT),
            "SOLUSDT" => (2, 3, 150 * UNIT),
            "ADAUSDT" => (4, 1, 45 * UNIT / 100),
            "XRPUSDT" => (4, 0, 55 * UNIT / 100),
            "DOGEUSDT" => (5, 0, 12 * UNIT / 100),
            "ETHBTC" => (5, 4, 5 * UNIT / 100),
            "BNBBTC" => (6, 3, 9 * UNIT / 1_000),
            _ => {
                // 1.00 to 99.99, from the name.
                let cents = 100 + (symbol.stable_hash() % 9_900) as i64;
                (4, 2, cents * UNIT / 100)
            }
        };
        let (base_asset, quote_asset) = split_symbol(symbol.as_str());
        SymbolSpec {
            symbol,
            base_asset,
            quote_asset,
            price_decimals,
            qty_decimals,
            initial_price,
        }
    }

    /// Tick size in units of 10^-8.
    pub fn tick(&self) -> i64 {
        pow10(UNIT_SCALE - self.price_decimals)
    }

    /// Step size in units of 10^-8.
    pub fn step(&self) -> i64 {
        pow10(UNIT_SCALE - self.qty_decimals)
    }
}

fn split_symbol(symbol: &str) -> (String, String) {
    for quote in QUOTE_ASSETS {
        if let Some(base) = symbol.strip_suffix(quote) {
            if !base.is_empty() {
                return (base.to_string(), quote.to_string());
            }
        }
    }
    let cut = symbol.len().saturating_sub(3).max(1).min(symbol.len());
    (symbol[..cut].to_string(), symbol[cut..].to_string())
}

fn pow10(exp: u32) -> i64 {
    10i64.pow(exp)
}

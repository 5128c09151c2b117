//! Placeholder until the parser lands in this same branch.
use super::{Message, ParseError, TimeUnit};

#[derive(Debug, Default, Clone)]
pub struct ParseStats {
    pub unknown_fields: u64,
    pub unknown_events: u64,
}

pub struct Parser {
    pub time_unit: TimeUnit,
    pub stats: ParseStats,
}

impl Parser {
    pub fn new(time_unit: TimeUnit) -> Parser {
        Parser {
            time_unit,
            stats: ParseStats::default(),
        }
    }
    pub fn parse<'a>(&'a mut self, _frame: &'a mut [u8]) -> Result<Message<'a>, ParseError> {
        Err(ParseError::NotObject)
    }
}

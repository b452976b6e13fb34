//! Phone numbers as a site configures them: parsing, "possible number" validation, and the
//! digit sequences ("forms") in which one number can appear in a page.
//!
//! We deliberately validate at libphonenumber's *possible* level (country code known, national
//! significant number of a plausible length, NANP area code not starting with 0/1) rather than
//! *valid*: fictional and newly issued ranges (the SPEC's own `+1 555-010-0000`) must be accepted,
//! while typos (a missing digit, letters, a trunk `0` after `+44`) are caught.

use std::fmt;

/// Dialling facts for one region. `trunk` is the national prefix dialled before the national
/// significant number inside the country (`0` in most of Europe and Australia, `1` in the NANP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub iso: &'static str,
    pub cc: &'static str,
    pub trunk: Option<&'static str>,
    pub nsn_len: (u8, u8),
}

/// Regions we know the trunk prefix and number lengths of. Others still work when written in
/// international form (`+CC ...`), with generic length limits (E.164: at most 15 digits).
const REGIONS: &[Region] = &[
    r("US", "1", Some("1"), 10, 10),
    r("CA", "1", Some("1"), 10, 10),
    r("GB", "44", Some("0"), 9, 10),
    r("IE", "353", Some("0"), 7, 10),
    r("DE", "49", Some("0"), 5, 13),
    r("AT", "43", Some("0"), 4, 13),
    r("CH", "41", Some("0"), 9, 9),
    r("FR", "33", Some("0"), 9, 9),
    r("BE", "32", Some("0"), 8, 9),
    r("NL", "31", Some("0"), 9, 9),
    r("LU", "352", None, 4, 11),
    r("ES", "34", None, 9, 9),
    r("PT", "351", None, 9, 9),
    r("IT", "39", None, 6, 11),
    r("SE", "46", Some("0"), 7, 10),
    r("NO", "47", None, 8, 8),
    r("DK", "45", None, 8, 8),
    r("FI", "358", Some("0"), 5, 12),
    r("PL", "48", None, 9, 9),
    r("CZ", "420", None, 9, 9),
    r("GR", "30", None, 10, 10),
    r("AU", "61", Some("0"), 9, 9),
    r("NZ", "64", Some("0"), 8, 10),
    r("ZA", "27", Some("0"), 9, 9),
    r("IN", "91", Some("0"), 10, 10),
    r("JP", "81", Some("0"), 9, 10),
    r("SG", "65", None, 8, 8),
    r("HK", "852", None, 8, 8),
    r("MX", "52", None, 10, 10),
    r("BR", "55", Some("0"), 10, 11),
    r("AR", "54", Some("0"), 10, 10),
    r("IL", "972", Some("0"), 8, 9),
    r("AE", "971", Some("0"), 8, 9),
];

const fn r(iso: &'static str, cc: &'static str, trunk: Option<&'static str>, lo: u8, hi: u8) -> Region {
    Region {
        iso,
        cc,
        trunk,
        nsn_len: (lo, hi),
    }
}

/// Every assigned ITU-T E.164 country calling code not in [`REGIONS`], so that `+CC ...` numbers
/// of any country parse. One- and two-digit codes are listed in full; three-digit codes are
/// accepted when their two-digit prefix is not itself a code (the numbering plan is prefix-free).
const OTHER_CODES: &[&str] = &[
    "7", "20", "36", "40", "51", "53", "56", "57", "58", "60", "62", "63", "66", "82", "84", "86", "90", "92", "93",
    "94", "95", "98",
];

/// Looks a region up by ISO 3166 code (case-insensitive).
pub fn region(iso: &str) -> Option<&'static Region> {
    REGIONS.iter().find(|r| r.iso.eq_ignore_ascii_case(iso))
}

fn region_for_cc(cc: &str) -> Option<&'static Region> {
    REGIONS.iter().find(|r| r.cc == cc)
}

/// A phone number reduced to what identifies it: country calling code and national significant
/// number (digits only), plus the region facts used to find it in text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PhoneNumber {
    pub cc: String,
    pub nsn: String,
    pub trunk: Option<String>,
}

/// Why a configured number was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("malformed phone number {0:?}: only digits, spaces, + ( ) - . / are allowed")]
    Malformed(String),
    #[error("impossible phone number {0:?}: {1}")]
    Impossible(String, String),
    #[error("unknown country {0:?} (use an ISO 3166 code such as US, GB, DE)")]
    UnknownCountry(String),
}

impl PhoneNumber {
    /// Parses a number as an operator writes it in a rules file: international (`+44 20 7946 0000`,
    /// `+44 (0)20 7946 0000`, `0044 ...`) or national for `country` (`(555) 010-0000`, `020 7946 0000`).
    pub fn parse(input: &str, country: &str) -> Result<PhoneNumber, PhoneError> {
        let malformed = || PhoneError::Malformed(input.to_string());
        let impossible = |why: String| PhoneError::Impossible(input.to_string(), why);
        let trimmed = input.trim();
        // `(0)` after the country code is a UK/European convention for the optional trunk prefix.
        let without_optional_trunk = trimmed.replace("(0)", "");
        let mut digits = String::new();
        let mut plus = false;
        for (i, c) in without_optional_trunk.chars().enumerate() {
            match c {
                '0'..='9' => digits.push(c),
                '+' if i == 0 => plus = true,
                ' ' | '-' | '.' | '/' | '(' | ')' | '\u{a0}' => {}
                _ => return Err(malformed()),
            }
        }
        if digits.is_empty() {
            return Err(malformed());
        }
        if !plus {
            for idd in ["00", "011"] {
                if let Some(rest) = digits.strip_prefix(idd)
                    && digits.len() > 10
                {
                    digits = rest.to_string();
                    plus = true;
                    break;
                }
            }
        }
        let (cc, nsn, region) = if plus {
            let (cc, region) =
                split_country_code(&digits).ok_or_else(|| impossible("no such country calling code".into()))?;
            let nsn = digits[cc.len()..].to_string();
            if let (Some(reg), Some(t)) = (region, region.and_then(|r| r.trunk))
                && t == "0"
                && nsn.starts_with('0')
                && reg.nsn_len.1 < nsn.len() as u8
            {
                return Err(impossible(format!(
                    "the trunk prefix 0 is not dialled after +{cc}; write +{cc} {} or +{cc} (0){}",
                    &nsn[1..],
                    &nsn[1..]
                )));
            }
            (cc.to_string(), nsn, region)
        } else {
            let reg = region(country).ok_or_else(|| PhoneError::UnknownCountry(country.to_string()))?;
            let mut nsn = digits.clone();
            if let Some(t) = reg.trunk
                && nsn.len() as u8 > reg.nsn_len.1
                && let Some(rest) = nsn.strip_prefix(t)
            {
                nsn = rest.to_string();
            } else if let Some(t) = reg.trunk
                && t == "0"
                && let Some(rest) = nsn.strip_prefix(t)
            {
                nsn = rest.to_string();
            }
            (reg.cc.to_string(), nsn, Some(reg))
        };
        let (lo, hi) = region.map(|r| r.nsn_len).unwrap_or((4, 14));
        let len = nsn.len() as u8;
        if len < lo || len > hi || cc.len() + nsn.len() > 15 {
            let want = if lo == hi {
                format!("{lo}")
            } else {
                format!("{lo} to {hi}")
            };
            return Err(impossible(format!(
                "the national number of +{cc} has {want} digits, this one has {len}"
            )));
        }
        if cc == "1" && matches!(nsn.as_bytes()[0], b'0' | b'1') {
            return Err(impossible("a North American area code cannot start with 0 or 1".into()));
        }
        Ok(PhoneNumber {
            cc,
            nsn,
            trunk: region.and_then(|r| r.trunk).map(str::to_string),
        })
    }

    /// E.164, the canonical key of a number: `+15550100000`.
    pub fn e164(&self) -> String {
        format!("+{}{}", self.cc, self.nsn)
    }

    /// The digit sequences this number may appear as in a page, longest first, so that
    /// `1 555 010 0000` is matched whole rather than as its last ten digits.
    pub fn forms(&self) -> Vec<Form> {
        let mut forms = Vec::new();
        let mut push = |kind: FormKind, digits: String| {
            if !forms.iter().any(|f: &Form| f.digits == digits) {
                forms.push(Form { kind, digits });
            }
        };
        for idd in ["011", "00"] {
            push(FormKind::Idd(idd), format!("{idd}{}{}", self.cc, self.nsn));
        }
        if let Some(t) = &self.trunk
            && t == "0"
        {
            // `+44 (0)20 7946 0000` and the common mistake `+44 020 7946 0000`; the same after
            // an international prefix, `0044 (0)20 7946 0000`.
            push(FormKind::IntlTrunk, format!("{}{t}{}", self.cc, self.nsn));
            for idd in ["011", "00"] {
                push(FormKind::IddTrunk(idd), format!("{idd}{}{t}{}", self.cc, self.nsn));
            }
        }
        // Before Trunk: in the NANP trunk "1" equals the country code, and the one form
        // `15550100000` must stay usable after a `+`.
        push(FormKind::Intl, format!("{}{}", self.cc, self.nsn));
        if let Some(t) = &self.trunk {
            push(FormKind::Trunk, format!("{t}{}", self.nsn));
        }
        push(FormKind::National, self.nsn.clone());
        forms.sort_by_key(|f| std::cmp::Reverse(f.digits.len()));
        forms
    }

    /// The country calling code as a number (`1`, `44`, `353`).
    pub fn calling_code(&self) -> u16 {
        self.cc.parse().unwrap_or(0)
    }

    /// The digits to write for `kind` when this number replaces another in that form. A form the
    /// number lacks (a trunk prefix in a country without one) falls back to the closest one.
    pub fn digits_for(&self, kind: FormKind) -> String {
        match kind {
            FormKind::Idd(idd) => format!("{idd}{}{}", self.cc, self.nsn),
            FormKind::IddTrunk(idd) => match &self.trunk {
                Some(t) if t == "0" => format!("{idd}{}{t}{}", self.cc, self.nsn),
                _ => format!("{idd}{}{}", self.cc, self.nsn),
            },
            FormKind::IntlTrunk => match &self.trunk {
                Some(t) if t == "0" => format!("{}{t}{}", self.cc, self.nsn),
                _ => format!("{}{}", self.cc, self.nsn),
            },
            FormKind::Trunk => match &self.trunk {
                Some(t) => format!("{t}{}", self.nsn),
                None => self.nsn.clone(),
            },
            FormKind::Intl => format!("{}{}", self.cc, self.nsn),
            FormKind::National => self.nsn.clone(),
        }
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "+{}{}", self.cc, self.nsn)
    }
}

/// How the digits of a number were written: which prefix came before the national number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FormKind {
    /// International dialling prefix, country code, national number: `001 555 010 0000`.
    Idd(&'static str),
    /// International dialling prefix, country code, trunk prefix, national number:
    /// `0044 (0)20 7946 0000`.
    IddTrunk(&'static str),
    /// Country code, trunk prefix, national number: `+44 (0)20 7946 0000`.
    IntlTrunk,
    /// Trunk prefix and national number: `020 7946 0000`, `1-555-010-0000`.
    Trunk,
    /// Country code and national number: `+1 555 010 0000`.
    Intl,
    /// The national significant number alone: `(555) 010-0000`, `(20) 7946 0000`.
    National,
}

impl FormKind {
    /// Whether the form is meaningful only for a reader in the number's own country.
    pub fn is_domestic(self) -> bool {
        matches!(self, FormKind::Trunk | FormKind::National)
    }
}

/// One digit sequence a configured number can appear as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Form {
    pub kind: FormKind,
    pub digits: String,
}

fn split_country_code(digits: &str) -> Option<(&str, Option<&'static Region>)> {
    for len in 1..=3 {
        if digits.len() <= len {
            return None;
        }
        let cc = &digits[..len];
        if let Some(reg) = region_for_cc(cc) {
            return Some((cc, Some(reg)));
        }
        if OTHER_CODES.contains(&cc) {
            return Some((cc, None));
        }
        // Three-digit codes: anything whose shorter prefixes were not codes. Zones 2, 3, 4, 5, 6,
        // 8 and 9 contain three-digit codes; `0` is never a country code.
        if len == 3 && cc.as_bytes()[0] != b'0' {
            return Some((cc, None));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str, c: &str) -> PhoneNumber {
        PhoneNumber::parse(s, c).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_international_and_national_forms() {
        assert_eq!(p("+1 555-010-0000", "US").e164(), "+15550100000");
        assert_eq!(p("(555) 010-0000", "US").e164(), "+15550100000");
        assert_eq!(p("1-555-010-0000", "US").e164(), "+15550100000");
        assert_eq!(p("+44 (0)20 7946 0000", "US").e164(), "+442079460000");
        assert_eq!(p("020 7946 0000", "GB").e164(), "+442079460000");
        assert_eq!(p("0044 20 7946 0000", "US").e164(), "+442079460000");
        assert_eq!(p("030 1234567", "DE").e164(), "+49301234567");
        assert_eq!(p("01 23 45 67 89", "FR").e164(), "+33123456789");
        assert_eq!(p("(02) 9876 5432", "AU").e164(), "+61298765432");
        assert_eq!(p("+81 3-1234-5678", "US").e164(), "+81312345678");
    }

    #[test]
    fn refuses_impossible_and_malformed_numbers() {
        assert!(matches!(
            PhoneNumber::parse("555-010-000", "US"),
            Err(PhoneError::Impossible(..))
        ));
        assert!(matches!(
            PhoneNumber::parse("+1 155 010 0000", "US"),
            Err(PhoneError::Impossible(..))
        ));
        assert!(matches!(
            PhoneNumber::parse("call 555", "US"),
            Err(PhoneError::Malformed(_))
        ));
        assert!(matches!(PhoneNumber::parse("", "US"), Err(PhoneError::Malformed(_))));
        assert!(matches!(
            PhoneNumber::parse("+44 020 7946 0000", "GB"),
            Err(PhoneError::Impossible(..))
        ));
        assert!(matches!(
            PhoneNumber::parse("555 0100", "XX"),
            Err(PhoneError::UnknownCountry(_))
        ));
    }

    #[test]
    fn forms_are_longest_first_and_distinct() {
        let us = p("+1 555-010-0000", "US");
        let digits: Vec<_> = us.forms().into_iter().map(|f| f.digits).collect();
        assert_eq!(digits, ["01115550100000", "0015550100000", "15550100000", "5550100000"]);
        let gb = p("+44 20 7946 0000", "GB");
        let digits: Vec<_> = gb.forms().into_iter().map(|f| f.digits).collect();
        assert_eq!(
            digits,
            [
                "0114402079460000",
                "011442079460000",
                "004402079460000",
                "00442079460000",
                "4402079460000",
                "442079460000",
                "02079460000",
                "2079460000"
            ]
        );
    }
}

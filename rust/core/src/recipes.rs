//! Recipes: the named sets of rules with which each upstream implementation builds its data.
//!
//! A recipe is chosen by name (`"lmobjectives"`, the default, `"google-bert"`, `"albert"`,
//! `"spanbert"`, `"huggingface"`, `"fairseq"`, `"t5"`, `"bart"`, `"ul2"`) and decides, for each
//! family of objectives it applies to, the *rules* no argument expresses (what the masking budget
//! counts and how it rounds, which ids random replacements come from, whether words run across
//! `[SEP]`, how spans end, how NSP/SOP pick a random document and treat single-sentence chunks,
//! which ids BART draws random tokens from) and the *defaults* of the arguments it sets (the
//! masking unit, the exact budget, the replacement decision). Explicit arguments override those
//! defaults; the rules are fixed by the recipe. This module is the one place that maps a recipe to
//! its rules; the rule types live with the kernels that follow them.
//!
//! Where each rule comes from (upstream file, and why ours differs) is in the documentation page
//! `docs/guide/recipes.md`.

use crate::denoise::bart::RandomTokens;
use crate::masking::{BudgetBase, MaskingRules, ReplacementPool, Rounding, SpanRule};
use crate::pairs::{PairRules, RandomDocument, SingleSentenceSop, Task};
use crate::{CoreError, Result};

/// A named recipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recipe {
    /// This library's own choices (the default).
    Lmobjectives,
    /// Google BERT's `create_pretraining_data.py`.
    GoogleBert,
    /// ALBERT's `create_pretraining_data.py`.
    Albert,
    /// SpanBERT's `pretraining/fairseq/data/masking.py`.
    SpanBert,
    /// Hugging Face `transformers`' data collators.
    HuggingFace,
    /// fairseq's `DenoisingDataset` (BART's noising).
    Fairseq,
    /// T5's `span_corruption`.
    T5,
    /// BART (fairseq's `DenoisingDataset` with the BART-large settings).
    Bart,
    /// UL2's mixture of denoisers.
    Ul2,
}

/// Every recipe with its name, in documentation order.
pub const RECIPES: [(&str, Recipe); 9] = [
    ("lmobjectives", Recipe::Lmobjectives),
    ("google-bert", Recipe::GoogleBert),
    ("albert", Recipe::Albert),
    ("spanbert", Recipe::SpanBert),
    ("huggingface", Recipe::HuggingFace),
    ("fairseq", Recipe::Fairseq),
    ("t5", Recipe::T5),
    ("bart", Recipe::Bart),
    ("ul2", Recipe::Ul2),
];

/// The families of objectives a recipe can apply to (one per class of the Python API).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// MLM masking (`MLMCollator`).
    Masking,
    /// NSP / SOP instances (`SentencePairDataset`).
    Pairs,
    /// T5 span corruption (`T5SpanCorruptionCollator`).
    T5,
    /// UL2's mixture (`UL2Collator`).
    Ul2,
    /// BART's noising (`BartDenoisingCollator`).
    Bart,
}

impl Family {
    pub fn parse(arg: &str, s: &str) -> Result<Self> {
        match s {
            "masking" => Ok(Family::Masking),
            "pairs" => Ok(Family::Pairs),
            "t5" => Ok(Family::T5),
            "ul2" => Ok(Family::Ul2),
            "bart" => Ok(Family::Bart),
            other => Err(CoreError::invalid(
                arg,
                format!("must be 'masking', 'pairs', 't5', 'ul2' or 'bart', got {other:?}"),
            )),
        }
    }

    /// The class that implements the family, for messages.
    fn class(self) -> &'static str {
        match self {
            Family::Masking => "MLMCollator",
            Family::Pairs => "SentencePairDataset",
            Family::T5 => "T5SpanCorruptionCollator",
            Family::Ul2 => "UL2Collator",
            Family::Bart => "BartDenoisingCollator",
        }
    }
}

impl Recipe {
    /// The recipe named `s`.
    pub fn parse(arg: &str, s: &str) -> Result<Self> {
        RECIPES
            .iter()
            .find(|(name, _)| *name == s)
            .map(|&(_, r)| r)
            .ok_or_else(|| {
                let names: Vec<String> = RECIPES.iter().map(|(n, _)| format!("'{n}'")).collect();
                CoreError::invalid(
                    arg,
                    format!("must be one of {}, got '{s}'", names.join(", ")),
                )
            })
    }

    pub fn name(self) -> &'static str {
        RECIPES
            .iter()
            .find(|&&(_, r)| r == self)
            .map_or("lmobjectives", |(n, _)| n)
    }

    /// The families this recipe defines.
    pub fn families(self) -> &'static [Family] {
        match self {
            Recipe::Lmobjectives => &[
                Family::Masking,
                Family::Pairs,
                Family::T5,
                Family::Ul2,
                Family::Bart,
            ],
            Recipe::GoogleBert | Recipe::Albert => &[Family::Masking, Family::Pairs],
            Recipe::SpanBert => &[Family::Masking],
            Recipe::HuggingFace => &[Family::Masking, Family::T5],
            Recipe::Fairseq | Recipe::Bart => &[Family::Bart],
            Recipe::T5 => &[Family::T5],
            Recipe::Ul2 => &[Family::Ul2],
        }
    }

    /// `Ok` when the recipe applies to `family`, else an error naming `recipe` and listing the
    /// recipes that do.
    pub fn check_family(self, family: Family) -> Result<()> {
        if self.families().contains(&family) {
            return Ok(());
        }
        let fits: Vec<String> = RECIPES
            .iter()
            .filter(|(_, r)| r.families().contains(&family))
            .map(|(n, _)| format!("'{n}'"))
            .collect();
        Err(CoreError::invalid(
            "recipe",
            format!(
                "'{}' does not apply to {} (its recipes: {})",
                self.name(),
                family.class(),
                fits.join(", ")
            ),
        ))
    }

    /// The masking rules and argument defaults of this recipe for `unit` (`None`: the recipe's
    /// own unit).
    pub fn masking(self, unit: Option<&str>) -> Result<MaskingRecipe> {
        self.check_family(Family::Masking)?;
        let (units, rules, replace_by): (&[&str], MaskingRules, &str) = match self {
            Recipe::GoogleBert => (&["token", "word"], MaskingRules::GOOGLE, "token"),
            Recipe::Albert => (&["ngram", "word", "token"], MaskingRules::GOOGLE, "token"),
            Recipe::SpanBert => (&["span"], MaskingRules::SPANBERT, "run"),
            Recipe::HuggingFace => (&["token", "word"], MaskingRules::HUGGINGFACE, "token"),
            _ => (
                &["token", "word", "span", "ngram"],
                MaskingRules::LMOBJECTIVES,
                "unit",
            ),
        };
        let unit = match unit {
            None => units[0],
            Some(u) => *units.iter().find(|&&x| x == u).ok_or_else(|| {
                let known = ["token", "word", "span", "ngram"];
                let names: Vec<String> = units.iter().map(|n| format!("'{n}'")).collect();
                let message = if known.contains(&u) {
                    format!(
                        "recipe '{}' does not define unit='{u}' (its units: {})",
                        self.name(),
                        names.join(", ")
                    )
                } else {
                    format!("must be 'token', 'word', 'span' or 'ngram', got '{u}'")
                };
                CoreError::invalid("unit", message)
            })?,
        };
        // Token masking draws per token in every recipe but Google's and ALBERT's exact budget;
        // Hugging Face draws words per word; the rest fill a token budget.
        let exact_budget = match self {
            Recipe::HuggingFace => false,
            Recipe::GoogleBert | Recipe::Albert | Recipe::SpanBert => true,
            _ => unit != "token",
        };
        Ok(MaskingRecipe {
            rules,
            unit,
            exact_budget,
            replace_by,
        })
    }

    /// The NSP/SOP rules of this recipe for `task`.
    pub fn pairs(self, task: Task) -> Result<PairRules> {
        self.check_family(Family::Pairs)?;
        match (self, task) {
            (Recipe::GoogleBert, Task::Sop) => Err(CoreError::invalid(
                "recipe",
                "'google-bert' defines next-sentence prediction only; sentence order is \
                 ALBERT's (recipe='albert')",
            )),
            (Recipe::GoogleBert | Recipe::Albert, _) => Ok(PairRules {
                random_document: RandomDocument::GoogleRetries,
                sop_single_sentence: SingleSentenceSop::RandomDocument,
            }),
            _ => Ok(PairRules::default()),
        }
    }

    /// Which ids BART's random tokens come from under this recipe.
    pub fn bart_random_tokens(self) -> Result<RandomTokens> {
        self.check_family(Family::Bart)?;
        Ok(match self {
            Recipe::Fairseq | Recipe::Bart => RandomTokens::FromOne,
            _ => RandomTokens::NonSpecial,
        })
    }
}

/// A recipe's masking: the rules it fixes and the defaults it gives the arguments.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MaskingRecipe {
    pub rules: MaskingRules,
    /// The unit (the one asked for, or the recipe's own).
    pub unit: &'static str,
    /// The default of `exact_budget` for that unit.
    pub exact_budget: bool,
    /// The default of `replace_by`.
    pub replace_by: &'static str,
}

/// The masking configuration after a recipe's defaults are merged with explicit arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedMasking {
    pub rules: MaskingRules,
    pub unit: String,
    pub exact_budget: bool,
    pub replace_by: String,
}

/// Merges explicit arguments (`Some`) over the defaults of `recipe`.
pub fn resolve_masking(
    recipe: Recipe,
    unit: Option<&str>,
    exact_budget: Option<bool>,
    replace_by: Option<&str>,
) -> Result<ResolvedMasking> {
    let m = recipe.masking(unit)?;
    Ok(ResolvedMasking {
        rules: m.rules,
        unit: m.unit.to_string(),
        exact_budget: exact_budget.unwrap_or(m.exact_budget),
        replace_by: replace_by.unwrap_or(m.replace_by).to_string(),
    })
}

impl MaskingRules {
    /// This library's choices: the budget is a share of the eligible (non-special) tokens,
    /// rounded half to even; random replacements are non-special ids; words, spans and n-grams
    /// stop at special tokens and never cut a word.
    pub const LMOBJECTIVES: Self = Self {
        budget_base: BudgetBase::Eligible,
        rounding: Rounding::HalfEven,
        pool: ReplacementPool::NonSpecial,
        words_across_specials: false,
        spans: SpanRule::WholeWords,
    };

    /// Google BERT's and ALBERT's: the budget counts every token of the row ([CLS] and [SEP]
    /// included), random replacements come from the whole vocabulary, and the candidate list
    /// runs across special tokens (a continuation piece after [SEP] joins the word before it;
    /// ALBERT's n-grams run across the middle [SEP]).
    pub const GOOGLE: Self = Self {
        budget_base: BudgetBase::RealTokens,
        rounding: Rounding::HalfEven,
        pool: ReplacementPool::Vocabulary,
        words_across_specials: true,
        spans: SpanRule::WholeWords,
    };

    /// SpanBERT's: `ceil(p·n)` of the eligible tokens, spans that run through masked words and
    /// cut the last word at the budget, random replacements by corpus frequency.
    pub const SPANBERT: Self = Self {
        budget_base: BudgetBase::Eligible,
        rounding: Rounding::Ceil,
        pool: ReplacementPool::Frequency,
        words_across_specials: false,
        spans: SpanRule::SpanBert,
    };

    /// Hugging Face's: as ours, except that random replacements come from the whole vocabulary.
    pub const HUGGINGFACE: Self = Self {
        pool: ReplacementPool::Vocabulary,
        ..Self::LMOBJECTIVES
    };
}

impl Default for MaskingRules {
    fn default() -> Self {
        Self::LMOBJECTIVES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_errors() {
        for (name, r) in RECIPES {
            assert_eq!(Recipe::parse("recipe", name).unwrap(), r);
            assert_eq!(r.name(), name);
        }
        let err = Recipe::parse("recipe", "bert").unwrap_err();
        assert!(matches!(&err, CoreError::InvalidArgument { arg, message }
            if arg == "recipe" && message.contains("'google-bert'")));
    }

    #[test]
    fn recipes_apply_only_where_they_are_defined() {
        assert!(Recipe::SpanBert.check_family(Family::Pairs).is_err());
        assert!(Recipe::T5.masking(None).is_err());
        let err = Recipe::Fairseq.masking(None).unwrap_err();
        assert!(matches!(&err, CoreError::InvalidArgument { arg, message }
            if arg == "recipe" && message.contains("MLMCollator") && message.contains("'albert'")));
        assert!(Recipe::GoogleBert.pairs(Task::Sop).is_err());
        assert_eq!(
            Recipe::Albert.pairs(Task::Sop).unwrap().sop_single_sentence,
            SingleSentenceSop::RandomDocument
        );
        assert_eq!(
            Recipe::Lmobjectives.pairs(Task::Nsp).unwrap(),
            PairRules::default()
        );
        assert_eq!(
            Recipe::Bart.bart_random_tokens().unwrap(),
            RandomTokens::FromOne
        );
        assert!(Recipe::Ul2.bart_random_tokens().is_err());
    }

    #[test]
    fn masking_defaults_and_overrides() {
        let m = Recipe::Albert.masking(None).unwrap();
        assert_eq!(
            (m.unit, m.exact_budget, m.replace_by),
            ("ngram", true, "token")
        );
        assert_eq!(m.rules, MaskingRules::GOOGLE);
        let m = Recipe::Lmobjectives.masking(None).unwrap();
        assert_eq!(
            (m.unit, m.exact_budget, m.replace_by),
            ("token", false, "unit")
        );
        assert!(
            Recipe::Lmobjectives
                .masking(Some("word"))
                .unwrap()
                .exact_budget
        );
        assert!(
            !Recipe::HuggingFace
                .masking(Some("word"))
                .unwrap()
                .exact_budget
        );
        let err = Recipe::SpanBert.masking(Some("word")).unwrap_err();
        assert!(matches!(&err, CoreError::InvalidArgument { arg, message }
            if arg == "unit" && message.contains("spanbert")));
        let r = resolve_masking(Recipe::GoogleBert, Some("word"), None, Some("unit")).unwrap();
        assert_eq!(
            (r.unit.as_str(), r.exact_budget, r.replace_by.as_str()),
            ("word", true, "unit")
        );
    }
}

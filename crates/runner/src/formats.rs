//! The five transcript formats, rendered from segments exactly as Project-W's runner
//! writes them: it uses whisperx's result writers (v3.7), which are openai-whisper's
//! `utils` writers plus word-level subtitle lines.
//!
//! - `as_txt`: one segment per line, stripped.
//! - `as_vtt`: `WEBVTT`, then cues with `MM:SS.mmm` times (`HH:` when needed).
//! - `as_srt`: numbered cues with `HH:MM:SS,mmm` times.
//! - `as_tsv`: a `start\tend\ttext` header, then integer milliseconds.
//! - `as_json`: the result document: `segments` (start, end, text, and `words` when
//!   aligned), `word_segments` when aligned, `language`, and the full `text`
//!   (openai-whisper's result field, which whisperx drops).
//!
//! With words (the job asked for alignment), subtitle cues are built from words and
//! shaped by `highlight_words`, `max_line_width` and `max_line_count`; without, every
//! segment is one cue. Quirks of the originals are kept on purpose (e.g. a line break
//! inside a cue follows a space), because clients compare against them.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::client::Transcript;

/// One recognised word with its time span in seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Word {
    /// Without surrounding whitespace, as whisperx's aligned words.
    pub word: String,
    pub start: f64,
    pub end: f64,
    /// How sure the model is (0–1), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
}

/// One transcribed stretch of audio, in seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    pub start: f64,
    pub end: f64,
    pub text: String,
    /// Present when the job asked for word timestamps (alignment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub words: Option<Vec<Word>>,
}

/// A finished transcription, before rendering.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Transcription {
    /// ISO 639-1 code: the job's language or the detected one.
    pub language: String,
    pub segments: Vec<Segment>,
}

/// How subtitle lines are shaped (the job's `alignment.processing`); only used when
/// the segments carry words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SubtitleOptions {
    /// Underline each word in turn (one cue per word, karaoke style).
    pub highlight_words: bool,
    /// Characters per line before a break.
    pub max_line_width: Option<usize>,
    /// Lines per cue; only with `max_line_width`.
    pub max_line_count: Option<usize>,
}

/// whisperx joins the words of these languages without spaces.
const LANGUAGES_WITHOUT_SPACES: [&str; 2] = ["ja", "zh"];

impl Transcription {
    /// All five formats.
    pub fn render(&self, options: &SubtitleOptions) -> Transcript {
        Transcript {
            as_txt: self.txt(),
            as_srt: self.srt(options),
            as_tsv: self.tsv(),
            as_vtt: self.vtt(options),
            as_json: self.json(),
        }
    }

    pub fn txt(&self) -> String {
        self.segments
            .iter()
            .map(|s| format!("{}\n", s.text.trim()))
            .collect()
    }

    pub fn vtt(&self, options: &SubtitleOptions) -> String {
        let mut out = String::from("WEBVTT\n\n");
        for cue in self.cues(options, Clock::Vtt) {
            out.push_str(&format!("{} --> {}\n{}\n\n", cue.start, cue.end, cue.text));
        }
        out
    }

    pub fn srt(&self, options: &SubtitleOptions) -> String {
        let mut out = String::new();
        for (i, cue) in self.cues(options, Clock::Srt).into_iter().enumerate() {
            out.push_str(&format!(
                "{}\n{} --> {}\n{}\n\n",
                i + 1,
                cue.start,
                cue.end,
                cue.text
            ));
        }
        out
    }

    pub fn tsv(&self) -> String {
        let mut out = String::from("start\tend\ttext\n");
        for s in &self.segments {
            out.push_str(&format!(
                "{}\t{}\t{}\n",
                millis(s.start),
                millis(s.end),
                s.text.trim().replace('\t', " ")
            ));
        }
        out
    }

    /// The result document. Times are rounded to milliseconds.
    pub fn json(&self) -> Map<String, Value> {
        let round = |t: f64| (t * 1000.0).round_ties_even() / 1000.0;
        let word_json = |w: &Word| {
            let mut word = json!({"word": w.word, "start": round(w.start), "end": round(w.end)});
            if let Some(score) = w.score {
                word["score"] = json!((score * 1000.0).round() / 1000.0);
            }
            word
        };
        let segments: Vec<Value> = self
            .segments
            .iter()
            .map(|s| {
                let mut segment =
                    json!({"start": round(s.start), "end": round(s.end), "text": s.text});
                if let Some(words) = &s.words {
                    segment["words"] = words.iter().map(word_json).collect();
                }
                segment
            })
            .collect();
        let mut doc = Map::new();
        doc.insert("segments".into(), Value::Array(segments));
        if self.segments.first().is_some_and(|s| s.words.is_some()) {
            let words: Vec<Value> = self
                .segments
                .iter()
                .flat_map(|s| s.words.iter().flatten())
                .map(word_json)
                .collect();
            doc.insert("word_segments".into(), Value::Array(words));
        }
        doc.insert("language".into(), json!(self.language));
        doc.insert("text".into(), json!(self.full_text()));
        doc
    }

    /// The segments' texts in a row, as openai-whisper's result `text`.
    pub fn full_text(&self) -> String {
        self.segments.iter().map(|s| s.text.as_str()).collect()
    }

    /// whisperx's `SubtitlesWriter.iterate_result`: (start, end, text) per cue.
    fn cues(&self, options: &SubtitleOptions, clock: Clock) -> Vec<Cue> {
        let Some(first) = self.segments.first() else {
            return Vec::new();
        };
        if first.words.is_none() {
            return self
                .segments
                .iter()
                .map(|s| Cue {
                    start: clock.format(s.start),
                    end: clock.format(s.end),
                    text: s.text.trim().replace("-->", "->"),
                })
                .collect();
        }
        let separator = if LANGUAGES_WITHOUT_SPACES.contains(&self.language.as_str()) {
            ""
        } else {
            " "
        };
        let mut cues = Vec::new();
        for subtitle in self.subtitles(options) {
            let start = subtitle
                .iter()
                .map(|w| w.start)
                .fold(f64::INFINITY, f64::min);
            let end = subtitle
                .iter()
                .map(|w| w.end)
                .fold(f64::NEG_INFINITY, f64::max);
            let subtitle_start = clock.format(start);
            let subtitle_end = clock.format(end);
            let words: Vec<&str> = subtitle.iter().map(|w| w.word.as_str()).collect();
            let text = words.join(separator);
            if options.highlight_words {
                let mut last = subtitle_start.clone();
                for (i, word) in subtitle.iter().enumerate() {
                    let start = clock.format(word.start);
                    let end = clock.format(word.end);
                    if last != start {
                        cues.push(Cue {
                            start: last.clone(),
                            end: start.clone(),
                            text: text.clone(),
                        });
                    }
                    let highlighted: Vec<String> = words
                        .iter()
                        .enumerate()
                        .map(|(j, w)| {
                            if j == i {
                                underline(w)
                            } else {
                                (*w).to_owned()
                            }
                        })
                        .collect();
                    cues.push(Cue {
                        start,
                        end: end.clone(),
                        text: highlighted.join(separator),
                    });
                    last = end;
                }
            } else {
                cues.push(Cue {
                    start: subtitle_start,
                    end: subtitle_end,
                    text,
                });
            }
        }
        cues
    }

    /// whisperx's `iterate_subtitles`: groups words into cues of lines. A word that
    /// starts a new line in a cue carries a leading `\n`.
    fn subtitles(&self, options: &SubtitleOptions) -> Vec<Vec<Word>> {
        let max_line_count = options.max_line_count;
        let preserve_segments = max_line_count.is_none() || options.max_line_width.is_none();
        let max_line_width = options.max_line_width.unwrap_or(1000);

        let mut subtitles = Vec::new();
        let mut line_len = 0usize;
        let mut line_count = 1usize;
        let mut subtitle: Vec<Word> = Vec::new();
        let mut last = self.segments.first().map_or(0.0, |s| s.start);
        for segment in &self.segments {
            for (i, original) in segment.words.iter().flatten().enumerate() {
                let mut timing = original.clone();
                let word_len = timing.word.chars().count();
                let long_pause = !preserve_segments && timing.start - last > 3.0;
                let has_room = line_len + word_len <= max_line_width;
                let seg_break = i == 0 && !subtitle.is_empty() && preserve_segments;
                if line_len > 0 && has_room && !long_pause && !seg_break {
                    line_len += word_len;
                } else {
                    timing.word = timing.word.trim().to_owned();
                    let cue_full = max_line_count.is_some_and(|max| line_count >= max);
                    if (!subtitle.is_empty()
                        && max_line_count.is_some()
                        && (long_pause || cue_full))
                        || seg_break
                    {
                        subtitles.push(std::mem::take(&mut subtitle));
                        line_count = 1;
                    } else if line_len > 0 {
                        line_count += 1;
                        timing.word = format!("\n{}", timing.word);
                    }
                    line_len = timing.word.trim().chars().count();
                }
                last = timing.start;
                subtitle.push(timing);
            }
        }
        if !subtitle.is_empty() {
            subtitles.push(subtitle);
        }
        subtitles
    }
}

/// `re.sub(r"^(\s*)(.*)$", r"\1<u>\2</u>", word)`.
fn underline(word: &str) -> String {
    let rest = word.trim_start();
    let lead = &word[..word.len() - rest.len()];
    format!("{lead}<u>{rest}</u>")
}

struct Cue {
    start: String,
    end: String,
    text: String,
}

#[derive(Debug, Clone, Copy)]
enum Clock {
    /// `MM:SS.mmm`, hours only when needed.
    Vtt,
    /// `HH:MM:SS,mmm`.
    Srt,
}

impl Clock {
    fn format(self, seconds: f64) -> String {
        match self {
            Clock::Vtt => format_timestamp(seconds, false, '.'),
            Clock::Srt => format_timestamp(seconds, true, ','),
        }
    }
}

/// Python's `round(1000 * seconds)`: ties go to the even neighbour. Negative or
/// non-finite times (never produced by a model) count as 0.
fn millis(seconds: f64) -> u64 {
    let ms = (seconds * 1000.0).round_ties_even();
    if ms.is_finite() && ms > 0.0 {
        // Saturating float-to-int conversion; 2^64 ms is far beyond any recording.
        ms as u64
    } else {
        0
    }
}

/// openai-whisper's `format_timestamp`.
pub fn format_timestamp(seconds: f64, always_include_hours: bool, decimal_marker: char) -> String {
    let mut ms = millis(seconds);
    let hours = ms / 3_600_000;
    ms -= hours * 3_600_000;
    let minutes = ms / 60_000;
    ms -= minutes * 60_000;
    let secs = ms / 1_000;
    ms -= secs * 1_000;
    let hours_marker = if always_include_hours || hours > 0 {
        format!("{hours:02}:")
    } else {
        String::new()
    };
    format!("{hours_marker}{minutes:02}:{secs:02}{decimal_marker}{ms:03}")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn word(word: &str, start: f64, end: f64) -> Word {
        Word {
            word: word.into(),
            start,
            end,
            score: Some(0.9),
        }
    }

    /// Project-W's dummy transcript (runner/project_W_runner/utils_dummy.py), which was
    /// produced by its whisperx writers: the same segments must give the same files.
    fn enterprise(with_words: bool) -> Transcription {
        let words = |list: &[(&str, f64, f64)]| {
            with_words.then(|| list.iter().map(|(w, s, e)| word(w, *s, *e)).collect())
        };
        Transcription {
            language: "en".into(),
            segments: vec![
                Segment {
                    start: 6.089,
                    end: 14.663,
                    text: " Space, the final frontier.".into(),
                    words: words(&[
                        ("Space,", 6.089, 6.59),
                        ("the", 7.231, 7.311),
                        ("final", 7.351, 7.672),
                        ("frontier.", 7.752, 14.663),
                    ]),
                },
                Segment {
                    start: 14.683,
                    end: 17.588,
                    text: "These are the voyages of the starship Enterprise.".into(),
                    words: words(&[
                        ("These", 14.683, 14.963),
                        ("are", 15.044, 15.124),
                        ("the", 15.164, 15.224),
                        ("voyages", 15.264, 15.705),
                        ("of", 15.765, 15.805),
                        ("the", 15.845, 15.925),
                        ("starship", 15.965, 16.526),
                        ("Enterprise.", 16.947, 17.588),
                    ]),
                },
            ],
        }
    }

    #[test]
    fn timestamps() {
        assert_eq!(format_timestamp(0.0, false, '.'), "00:00.000");
        assert_eq!(format_timestamp(6.089, true, ','), "00:00:06,089");
        assert_eq!(format_timestamp(3725.5, false, '.'), "01:02:05.500");
        assert_eq!(format_timestamp(59.9996, false, '.'), "01:00.000");
        // Python rounds ties to even: 0.0025 s is 2.5 ms → 2 ms.
        assert_eq!(format_timestamp(0.0025, false, '.'), "00:00.002");
        assert_eq!(format_timestamp(-1.0, true, ','), "00:00:00,000");
    }

    #[test]
    fn segment_level_formats_match_project_w() {
        let t = enterprise(false);
        let options = SubtitleOptions::default();
        assert_eq!(
            t.txt(),
            "Space, the final frontier.\nThese are the voyages of the starship Enterprise.\n"
        );
        assert_eq!(
            t.srt(&options),
            "1\n00:00:06,089 --> 00:00:14,663\nSpace, the final frontier.\n\n\
             2\n00:00:14,683 --> 00:00:17,588\nThese are the voyages of the starship Enterprise.\n\n"
        );
        assert_eq!(
            t.vtt(&options),
            "WEBVTT\n\n00:06.089 --> 00:14.663\nSpace, the final frontier.\n\n\
             00:14.683 --> 00:17.588\nThese are the voyages of the starship Enterprise.\n\n"
        );
        assert_eq!(
            t.tsv(),
            "start\tend\ttext\n6089\t14663\tSpace, the final frontier.\n\
             14683\t17588\tThese are the voyages of the starship Enterprise.\n"
        );
        let doc = t.json();
        assert_eq!(doc["language"], "en");
        assert_eq!(doc["segments"][1]["start"], 14.683);
        assert!(doc["segments"][0].get("words").is_none());
        assert!(!doc.contains_key("word_segments"));
        assert_eq!(
            doc["text"],
            " Space, the final frontier.These are the voyages of the starship Enterprise."
        );
    }

    #[test]
    fn word_level_cues_keep_segments_by_default() {
        let t = enterprise(true);
        let options = SubtitleOptions::default();
        // Cue times come from the words; text is the words joined by spaces.
        assert_eq!(
            t.srt(&options),
            "1\n00:00:06,089 --> 00:00:14,663\nSpace, the final frontier.\n\n\
             2\n00:00:14,683 --> 00:00:17,588\nThese are the voyages of the starship Enterprise.\n\n"
        );
        let doc = t.json();
        assert_eq!(
            doc["segments"][0]["words"][0],
            json!({"word": "Space,", "start": 6.089, "end": 6.59, "score": 0.9})
        );
        assert_eq!(doc["word_segments"].as_array().unwrap().len(), 12);
    }

    /// Expected outputs below were produced by whisperx 3.7.7's writers (the code
    /// Project-W's runner uses) from the same segments.
    #[test]
    fn line_width_and_count_shape_the_cues() {
        let t = enterprise(true);
        let shaped = |highlight_words, width, count| SubtitleOptions {
            highlight_words,
            max_line_width: width,
            max_line_count: count,
        };
        // Line length counts the words without their separating spaces.
        assert_eq!(
            t.vtt(&shaped(false, Some(20), Some(1))),
            "WEBVTT\n\n00:06.089 --> 00:07.672\nSpace, the final\n\n\
             00:07.752 --> 00:14.663\nfrontier.\n\n\
             00:14.683 --> 00:15.805\nThese are the voyages of\n\n\
             00:15.845 --> 00:16.526\nthe starship\n\n\
             00:16.947 --> 00:17.588\nEnterprise.\n\n"
        );
        // A line break inside a cue follows a space: whisperx joins the words with " "
        // and the new line's word carries the "\n".
        assert_eq!(
            t.srt(&shaped(false, Some(20), Some(2))),
            "1\n00:00:06,089 --> 00:00:14,663\nSpace, the final \nfrontier.\n\n\
             2\n00:00:14,683 --> 00:00:16,526\nThese are the voyages of \nthe starship\n\n\
             3\n00:00:16,947 --> 00:00:17,588\nEnterprise.\n\n"
        );
        // A width without a count wraps lines but keeps one cue per segment.
        assert_eq!(
            t.vtt(&shaped(false, Some(12), None)),
            "WEBVTT\n\n00:06.089 --> 00:14.663\nSpace, the \nfinal \nfrontier.\n\n\
             00:14.683 --> 00:17.588\nThese are the \nvoyages of the \nstarship \nEnterprise.\n\n"
        );
        let highlighted = t.vtt(&shaped(true, Some(20), Some(1)));
        assert!(
            highlighted.starts_with(
                "WEBVTT\n\n00:06.089 --> 00:06.590\n<u>Space,</u> the final\n\n\
                 00:06.590 --> 00:07.231\nSpace, the final\n\n\
                 00:07.231 --> 00:07.311\nSpace, <u>the</u> final\n\n\
                 00:07.311 --> 00:07.351\nSpace, the final\n\n\
                 00:07.351 --> 00:07.672\nSpace, the <u>final</u>\n\n\
                 00:07.752 --> 00:14.663\n<u>frontier.</u>\n\n"
            ),
            "{highlighted}"
        );
        assert!(
            highlighted.ends_with(
                "00:15.965 --> 00:16.526\nthe <u>starship</u>\n\n\
                 00:16.947 --> 00:17.588\n<u>Enterprise.</u>\n\n"
            ),
            "{highlighted}"
        );
        assert_eq!(highlighted.matches(" --> ").count(), 19);
    }

    #[test]
    fn a_long_pause_starts_a_new_cue_when_lines_are_shaped() {
        let t = Transcription {
            language: "en".into(),
            segments: vec![Segment {
                start: 0.0,
                end: 10.0,
                text: " one two".into(),
                words: Some(vec![word("one", 0.0, 0.5), word("two", 9.0, 10.0)]),
            }],
        };
        let options = SubtitleOptions {
            highlight_words: false,
            max_line_width: Some(40),
            max_line_count: Some(2),
        };
        assert_eq!(
            t.vtt(&options),
            "WEBVTT\n\n00:00.000 --> 00:00.500\none\n\n00:09.000 --> 00:10.000\ntwo\n\n"
        );
        assert_eq!(
            t.vtt(&SubtitleOptions::default()),
            "WEBVTT\n\n00:00.000 --> 00:10.000\none two\n\n"
        );
    }

    #[test]
    fn highlighted_words_get_a_cue_each() {
        let t = Transcription {
            language: "en".into(),
            segments: vec![Segment {
                start: 0.0,
                end: 2.0,
                text: " Hello there".into(),
                words: Some(vec![word("Hello", 0.5, 1.0), word("there", 1.2, 2.0)]),
            }],
        };
        let options = SubtitleOptions {
            highlight_words: true,
            ..SubtitleOptions::default()
        };
        assert_eq!(
            t.vtt(&options),
            "WEBVTT\n\n\
             00:00.500 --> 00:01.000\n<u>Hello</u> there\n\n\
             00:01.000 --> 00:01.200\nHello there\n\n\
             00:01.200 --> 00:02.000\nHello <u>there</u>\n\n"
        );
        assert_eq!(underline("\nword"), "\n<u>word</u>");
    }

    #[test]
    fn languages_without_spaces_join_words_directly() {
        let t = Transcription {
            language: "ja".into(),
            segments: vec![Segment {
                start: 0.0,
                end: 1.0,
                text: "こんにちは世界".into(),
                words: Some(vec![word("こんにちは", 0.0, 0.6), word("世界", 0.6, 1.0)]),
            }],
        };
        assert!(t
            .srt(&SubtitleOptions::default())
            .contains("\nこんにちは世界\n"));
    }

    #[test]
    fn no_segments_give_empty_but_well_formed_files() {
        let t = Transcription {
            language: "en".into(),
            segments: vec![],
        };
        let rendered = t.render(&SubtitleOptions::default());
        assert_eq!(rendered.as_txt, "");
        assert_eq!(rendered.as_srt, "");
        assert_eq!(rendered.as_vtt, "WEBVTT\n\n");
        assert_eq!(rendered.as_tsv, "start\tend\ttext\n");
        assert_eq!(
            Value::Object(rendered.as_json),
            json!({"segments": [], "language": "en", "text": ""})
        );
    }

    #[test]
    fn arrows_and_tabs_in_text_are_defused() {
        let t = Transcription {
            language: "en".into(),
            segments: vec![Segment {
                start: 1.0,
                end: 2.0,
                text: " a --> b\tc ".into(),
                words: None,
            }],
        };
        assert!(t.vtt(&SubtitleOptions::default()).contains("\na -> b\tc\n"));
        assert!(t.tsv().ends_with("1000\t2000\ta --> b c\n"));
    }
}

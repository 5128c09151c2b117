use std::path::{Path, PathBuf};
use std::time::Duration;

use super::manifest::FileState;
use super::*;

/// A temporary directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "alphapulse-capture-{name}-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn settings() -> Settings {
    Settings {
        rotate_bytes: 1 << 20,
        rotate_after: Duration::from_secs(3600),
        max_bytes: 1 << 30,
        flush_every: Duration::from_secs(1),
        level: 3,
    }
}

fn at(i: u64) -> Stamp {
    Stamp {
        wall_ns: 1_700_000_000_000_000_000 + i as i64 * 1_000,
        mono_ns: 5_000 + i * 1_000,
    }
}

fn frame(i: u64) -> String {
    format!("{{\"stream\":\"btcusdt@trade\",\"data\":{{\"e\":\"trade\",\"t\":{i},\"p\":\"100.{i:03}\"}}}}")
}

fn create(dir: &Path, settings: Settings) -> Writer {
    Writer::create(
        dir,
        settings,
        "ws://127.0.0.1:1/stream?streams=btcusdt@trade".into(),
        vec!["btcusdt@trade".into()],
        at(0),
    )
    .unwrap()
}

fn frames_of(dir: &Path) -> (Vec<String>, Option<String>) {
    let mut reader = Reader::open(dir).unwrap();
    let mut out = Vec::new();
    for record in reader.by_ref() {
        let record = record.unwrap();
        if record.kind == Kind::Frame {
            out.push(String::from_utf8(record.payload).unwrap());
        }
    }
    (out, reader.truncated().map(str::to_string))
}

#[test]
fn a_capture_reads_back_exactly_with_its_times_and_markers() {
    let dir = TempDir::new("roundtrip");
    let mut w = create(&dir.0, settings());
    w.record(Kind::Marker, at(1), b"{\"event\":\"connected\"}")
        .unwrap();
    for i in 2..100 {
        w.record(Kind::Frame, at(i), frame(i).as_bytes()).unwrap();
    }
    let manifest = w.finish(at(100)).unwrap();
    assert_eq!(manifest.files.len(), 1);
    let file = &manifest.files[0];
    assert_eq!(
        (file.frames, file.markers, file.state),
        (98, 1, FileState::Closed)
    );
    assert_eq!(file.first_wall_ns, Some(at(1).wall_ns));
    assert_eq!(file.last_mono_ns, Some(at(99).mono_ns));
    assert!(file.bytes > 0 && file.bytes < file.raw_bytes, "{file:?}");
    assert_eq!(manifest.ended_wall_ns, Some(at(100).wall_ns));
    assert_eq!(Manifest::load(&dir.0).unwrap(), manifest);
    let records: Vec<Record> = Reader::open(&dir.0).unwrap().map(Result::unwrap).collect();
    assert_eq!(records.len(), 99);
    assert_eq!(records[0].kind, Kind::Marker);
    assert_eq!(records[5].payload, frame(6).as_bytes());
    assert_eq!(
        (records[5].wall_ns, records[5].mono_ns),
        (at(6).wall_ns, at(6).mono_ns)
    );
}

#[test]
fn files_rotate_by_size_and_by_age_and_replay_in_order() {
    let dir = TempDir::new("rotate");
    let mut w = create(
        &dir.0,
        Settings {
            rotate_bytes: 2_000,
            level: 1,
            ..settings()
        },
    );
    let mut sent = Vec::new();
    for i in 0..3_000 {
        let f = format!("{}{}", frame(i), fastrand::u64(..));
        w.record(Kind::Frame, at(i), f.as_bytes()).unwrap();
        sent.push(f);
        if i % 20 == 19 {
            w.flush(at(i)).unwrap();
        }
    }
    let by_size = w.manifest().files.len();
    assert!(by_size >= 3, "{by_size} files");
    // An hour later (monotonic) the active file rotates by age at the next tick.
    let later = Stamp {
        wall_ns: at(3_000).wall_ns,
        mono_ns: at(3_000).mono_ns + 3_600_000_000_000,
    };
    w.tick(later).unwrap();
    assert!(w
        .manifest()
        .files
        .iter()
        .all(|f| f.state == FileState::Closed));
    let manifest = w.finish(later).unwrap();
    assert!(manifest.files.iter().all(|f| f.frames > 0));
    assert_eq!(manifest.frames(), 3_000);
    let (frames, truncated) = frames_of(&dir.0);
    assert_eq!(frames, sent);
    assert_eq!(truncated, None);
}

#[test]
fn the_budget_deletes_the_oldest_files_never_the_active_one() {
    let dir = TempDir::new("budget");
    let mut w = create(
        &dir.0,
        Settings {
            rotate_bytes: 1_000,
            max_bytes: 3_000,
            level: 1,
            ..settings()
        },
    );
    for i in 0..5_000 {
        let f = format!("{}{}", frame(i), fastrand::u64(..));
        w.record(Kind::Frame, at(i), f.as_bytes()).unwrap();
        if i % 20 == 19 {
            w.flush(at(i)).unwrap();
        }
        let m = w.manifest();
        let closed: u64 = m
            .files
            .iter()
            .filter(|f| f.state == FileState::Closed)
            .map(|f| f.bytes)
            .sum();
        assert!(closed <= 3_000, "closed files hold {closed} bytes");
    }
    let manifest = w.finish(at(5_000)).unwrap();
    assert!(manifest.bytes() <= 3_000);
    assert!(manifest.deleted_files_total > 0);
    assert_eq!(manifest.deleted.len() as u64, manifest.deleted_files_total);
    assert!(manifest.deleted.iter().all(|f| f.deleted_wall_ns.is_some()));
    for gone in &manifest.deleted {
        assert!(
            !dir.0.join(&gone.name).exists(),
            "{} still on disk",
            gone.name
        );
    }
    let on_disk = std::fs::read_dir(&dir.0).unwrap().count();
    assert_eq!(
        on_disk,
        manifest.files.len() + 1,
        "the files and the manifest"
    );
    // What is left replays: the newest frames, in order, ending with the last one.
    let (frames, _) = frames_of(&dir.0);
    assert_eq!(frames.len() as u64, manifest.frames());
    assert!(frames.last().unwrap().contains("\"t\":4999,"));
    assert!(Writer::create(&dir.0, settings(), String::new(), Vec::new(), at(0)).is_err());
    let tight = Settings {
        rotate_bytes: 2_000,
        max_bytes: 3_000,
        ..settings()
    };
    assert!(matches!(
        Writer::create(
            &TempDir::new("tight").0,
            tight,
            String::new(),
            Vec::new(),
            at(0)
        ),
        Err(WriteError::Budget { .. })
    ));
}

/// A capture killed (no finish, no final manifest) and its last file cut at every
/// point: the reader returns the frames up to the last whole one, never an error, and
/// never a frame that was not written.
#[test]
fn a_killed_capture_replays_up_to_its_last_whole_frame() {
    let dir = TempDir::new("killed");
    let mut w = create(&dir.0, settings());
    let mut sent = Vec::new();
    for i in 0..200 {
        w.record(Kind::Frame, at(i), frame(i).as_bytes()).unwrap();
        sent.push(frame(i));
        if i % 50 == 49 {
            w.flush(at(i)).unwrap();
        }
    }
    // Killed here: the writer is forgotten, so nothing closes the file.
    std::mem::forget(w);
    let manifest = Manifest::load(&dir.0).unwrap();
    assert_eq!(manifest.files.len(), 1);
    assert_eq!(manifest.files[0].state, FileState::Active);
    let path = dir.0.join(&manifest.files[0].name);
    let full = std::fs::read(&path).unwrap();
    let (whole, _) = frames_of(&dir.0);
    assert_eq!(whole, sent[..200], "everything up to the last flush");
    let mut last = 0;
    for cut in (0..full.len()).step_by(7).chain([full.len() - 1]) {
        std::fs::write(&path, &full[..cut]).unwrap();
        let (frames, truncated) = frames_of(&dir.0);
        assert_eq!(frames, sent[..frames.len()], "cut at {cut}");
        assert!(
            frames.len() >= last,
            "cut at {cut}: fewer frames than a shorter cut"
        );
        last = frames.len();
        if cut > 0 && frames.len() < 200 {
            assert!(truncated.is_some(), "cut at {cut}");
        }
    }
    assert!(
        last >= 150,
        "a cut just before the end keeps the frames flushed before it"
    );
}

#[test]
fn corrupt_captures_give_clear_errors() {
    let dir = TempDir::new("corrupt");
    let mut w = create(&dir.0, settings());
    for i in 0..100 {
        w.record(Kind::Frame, at(i), frame(i).as_bytes()).unwrap();
    }
    let manifest = w.finish(at(100)).unwrap();
    let path = dir.0.join(&manifest.files[0].name);
    let full = std::fs::read(&path).unwrap();
    let read_all = |dir: &Path| -> Result<usize, String> {
        let reader = Reader::open(dir).map_err(|e| e.to_string())?;
        let mut n = 0;
        for r in reader {
            r.map_err(|e| e.to_string())?;
            n += 1;
        }
        Ok(n)
    };
    assert_eq!(read_all(&dir.0), Ok(100));

    // A closed file cut short is damage, not a killed capture.
    std::fs::write(&path, &full[..full.len() / 2]).unwrap();
    let e = read_all(&dir.0).unwrap_err();
    assert!(
        e.contains(&manifest.files[0].name) && e.contains("closed whole"),
        "{e}"
    );

    // Flipped bytes in the compressed stream.
    let mut flipped = full.clone();
    for b in flipped.iter_mut().skip(20).step_by(3) {
        *b ^= 0x5a;
    }
    std::fs::write(&path, &flipped).unwrap();
    let e = read_all(&dir.0).unwrap_err();
    assert!(e.contains("capture file"), "{e}");

    // Not zstd at all.
    std::fs::write(&path, b"plain text, not a capture\n").unwrap();
    let e = read_all(&dir.0).unwrap_err();
    assert!(e.contains("capture file"), "{e}");

    // zstd, but not our records.
    std::fs::write(&path, zstd::encode_all(&b"hello\nworld\n"[..], 1).unwrap()).unwrap();
    let e = read_all(&dir.0).unwrap_err();
    assert!(e.contains("not a capture file"), "{e}");

    // A listed file that is gone.
    std::fs::remove_file(&path).unwrap();
    let e = read_all(&dir.0).unwrap_err();
    assert!(e.contains("cannot be opened"), "{e}");

    // A newer manifest, a broken one, none.
    let manifest_path = dir.0.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&manifest_path).unwrap();
    std::fs::write(
        &manifest_path,
        text.replace("\"version\": 1", "\"version\": 2"),
    )
    .unwrap();
    let e = read_all(&dir.0).unwrap_err();
    assert!(e.contains("version 2 is not supported"), "{e}");
    std::fs::write(&manifest_path, &text[..text.len() / 2]).unwrap();
    assert!(read_all(&dir.0)
        .unwrap_err()
        .contains("is not a capture manifest"));
    std::fs::remove_file(&manifest_path).unwrap();
    assert!(read_all(&dir.0).unwrap_err().contains("manifest.json"));
}

#[test]
fn streams_come_from_the_flags_or_the_configuration() {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: CaptureArgs,
    }
    let parse = |extra: &[&str]| {
        let mut argv = vec!["capture", "--out", "x"];
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv).unwrap().args
    };
    let config = Config {
        symbols: vec![Symbol::new("BTCUSDT").unwrap()],
        timeframes: vec![Interval::parse("1m").unwrap()],
        ..Config::default()
    };
    assert_eq!(
        plan_streams(&parse(&[]), &config).unwrap(),
        crate::feed::protocol::streams_for(
            &config.symbols,
            &config.timeframes,
            &config.feed.streams
        )
    );
    assert_eq!(
        plan_streams(
            &parse(&["--streams", "ethusdt@trade,ethusdt@trade"]),
            &config
        )
        .unwrap(),
        ["ethusdt@trade"]
    );
    let both = plan_streams(
        &parse(&[
            "--streams",
            "ethusdt@trade",
            "--symbols",
            "SOLUSDT",
            "--timeframes",
            "1m,5m",
        ]),
        &config,
    )
    .unwrap();
    assert_eq!(
        both[..3],
        ["ethusdt@trade", "solusdt@kline_1m", "solusdt@kline_5m"]
    );
    assert!(plan_streams(&parse(&["--streams", "a b"]), &config).is_err());
    assert_eq!(
        stream_url("ws://h:1/stream", &["a@trade".into(), "b@trade".into()]),
        "ws://h:1/stream?streams=a@trade/b@trade"
    );
    assert_eq!(
        stream_url("ws://h:1/stream?timeUnit=MICROSECOND", &["a@trade".into()]),
        "ws://h:1/stream?timeUnit=MICROSECOND&streams=a@trade"
    );
}

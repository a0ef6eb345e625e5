//! The run's figures: rows of (scenario, case, metric) with a value per path, printed as one
//! table per scenario with ratios to direct and to HAProxy, the goals of issue 9 checked
//! against them, and the same as JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::topology::Mode;

/// Which way is better for a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    Lower,
    Higher,
}

/// What a row measures.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    pub name: &'static str,
    pub unit: &'static str,
    pub better: Better,
}

impl Metric {
    pub const fn lower(name: &'static str, unit: &'static str) -> Metric {
        Metric {
            name,
            unit,
            better: Better::Lower,
        }
    }

    pub const fn higher(name: &'static str, unit: &'static str) -> Metric {
        Metric {
            name,
            unit,
            better: Better::Higher,
        }
    }
}

/// One figure measured on each path.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub scenario: String,
    pub case: String,
    pub metric: String,
    pub unit: &'static str,
    pub better: Better,
    pub values: BTreeMap<Mode, f64>,
}

impl Row {
    pub fn ratio(&self, of: Mode, to: Mode) -> Option<f64> {
        let (a, b) = (self.values.get(&of)?, self.values.get(&to)?);
        (*b != 0.0).then(|| a / b)
    }
}

/// A goal of the issue and what this run measured for it.
#[derive(Debug, Clone, Serialize)]
pub struct Goal {
    pub goal: String,
    pub measured: Option<String>,
    pub met: Option<bool>,
}

/// Failed (or never sent) calls of one measurement, of one kind, with the first message.
#[derive(Debug, Clone, Serialize)]
pub struct CallErrors {
    pub scenario: String,
    pub case: String,
    pub mode: Mode,
    /// `connect`, `request`, `answer` (see `openloop::CallError`) or `unserved`.
    pub kind: String,
    pub count: u64,
    pub first: String,
}

/// Where the run happened.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub cpu: String,
    pub kernel: String,
    pub load_average_at_start: String,
}

impl Machine {
    pub fn detect() -> Machine {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        Machine {
            cores: std::thread::available_parallelism().map_or(0, usize::from),
            cpu: read("/proc/cpuinfo")
                .lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .unwrap_or("unknown")
                .trim()
                .to_owned(),
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
            load_average_at_start: read("/proc/loadavg").trim().to_owned(),
        }
    }
}

/// Everything the run produced.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub machine: Machine,
    pub versions: BTreeMap<String, String>,
    pub settings: BTreeMap<String, String>,
    pub rows: Vec<Row>,
    pub goals: Vec<Goal>,
    /// What the "errors" and "unserved" rows counted, by kind.
    pub call_errors: Vec<CallErrors>,
    /// Setup or measurement failures (a missing figure says why here).
    pub errors: Vec<String>,
}

impl Report {
    pub fn new(machine: Machine) -> Report {
        Report {
            machine,
            versions: BTreeMap::new(),
            settings: BTreeMap::new(),
            rows: Vec::new(),
            goals: Vec::new(),
            call_errors: Vec::new(),
            errors: Vec::new(),
        }
    }

    /// Sets one value, making the row on first use.
    pub fn set(&mut self, scenario: &str, case: &str, metric: Metric, mode: Mode, value: f64) {
        let found = self
            .rows
            .iter()
            .position(|r| r.scenario == scenario && r.case == case && r.metric == metric.name);
        let index = found.unwrap_or_else(|| {
            self.rows.push(Row {
                scenario: scenario.to_owned(),
                case: case.to_owned(),
                metric: metric.name.to_owned(),
                unit: metric.unit,
                better: metric.better,
                values: BTreeMap::new(),
            });
            self.rows.len() - 1
        });
        self.rows[index].values.insert(mode, value);
    }

    pub fn get(&self, scenario: &str, case: &str, metric: &str) -> Option<&Row> {
        self.rows
            .iter()
            .find(|r| r.scenario == scenario && r.case == case && r.metric == metric)
    }

    /// Records `count` failed calls of `kind` in one measurement (nothing when 0).
    pub fn call_errors(&mut self, at: (&str, &str, Mode), kind: &str, count: u64, first: &str) {
        if count == 0 {
            return;
        }
        let (scenario, case, mode) = at;
        self.call_errors.push(CallErrors {
            scenario: scenario.to_owned(),
            case: case.to_owned(),
            mode,
            kind: kind.to_owned(),
            count,
            first: first.to_owned(),
        });
    }

    pub fn error(&mut self, message: String) {
        eprintln!("bench: {message}");
        self.errors.push(message);
    }

    /// The tables as text (Markdown, readable in a terminal).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "machine: {} cores, {}, kernel {}, load at start {}",
            self.machine.cores,
            self.machine.cpu,
            self.machine.kernel,
            self.machine.load_average_at_start
        );
        for (k, v) in &self.versions {
            let _ = writeln!(out, "{k}: {v}");
        }
        for (k, v) in &self.settings {
            let _ = writeln!(out, "{k}: {v}");
        }
        let mut scenarios: Vec<&str> = Vec::new();
        for row in &self.rows {
            if !scenarios.contains(&row.scenario.as_str()) {
                scenarios.push(&row.scenario);
            }
        }
        for scenario in scenarios {
            let _ = writeln!(out, "\n### {scenario}\n");
            let _ = writeln!(
                out,
                "| case | metric | direct | hostmesh | haproxy | hostmesh/direct | hostmesh/haproxy |"
            );
            let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|");
            for row in self.rows.iter().filter(|r| r.scenario == scenario) {
                let cell = |m: Mode| row.values.get(&m).map_or("–".to_owned(), |v| number(*v));
                let ratio = |to: Mode| {
                    row.ratio(Mode::Hostmesh, to)
                        .map_or("–".to_owned(), |r| format!("{r:.2}"))
                };
                let _ = writeln!(
                    out,
                    "| {} | {} ({}, {} better) | {} | {} | {} | {} | {} |",
                    row.case,
                    row.metric,
                    row.unit,
                    match row.better {
                        Better::Lower => "lower",
                        Better::Higher => "higher",
                    },
                    cell(Mode::Direct),
                    cell(Mode::Hostmesh),
                    cell(Mode::Haproxy),
                    ratio(Mode::Direct),
                    ratio(Mode::Haproxy),
                );
            }
        }
        if !self.goals.is_empty() {
            let _ = writeln!(out, "\n### goals (issue 9)\n");
            let _ = writeln!(out, "| goal | measured | met |");
            let _ = writeln!(out, "|---|---|---|");
            for g in &self.goals {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} |",
                    g.goal,
                    g.measured.as_deref().unwrap_or("not measured"),
                    match g.met {
                        Some(true) => "yes",
                        Some(false) => "**no**",
                        None => "–",
                    }
                );
            }
        }
        if !self.call_errors.is_empty() {
            let _ = writeln!(out, "\n### call errors\n");
            for e in &self.call_errors {
                let _ = writeln!(
                    out,
                    "- {} / {} via {}: {} {} (first: {})",
                    e.scenario,
                    e.case,
                    e.mode.name(),
                    e.count,
                    e.kind,
                    e.first
                );
            }
        }
        if !self.errors.is_empty() {
            let _ = writeln!(out, "\n### errors\n");
            for e in &self.errors {
                let _ = writeln!(out, "- {e}");
            }
        }
        out
    }
}

/// A figure with as many decimals as it needs.
fn number(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

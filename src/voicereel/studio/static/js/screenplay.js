// Screenplay text ("Name: text", one turn per line) into script rows, as the CLI reads it.

const TURN = /^\s*([^:\[\]]{1,100}?)\s*:\s*(.+)$/;
const PAUSE_LINE = /^\s*\[pause:(\d+(?:\.\d+)?)(ms|s)\]\s*$/i;

/** Rows {speaker_id, text, speed, pause_after_ms} and the problems found, by line. */
export function parseScreenplay(text, speakers) {
  const byName = new Map(speakers.map((s) => [s.name.toLowerCase(), s.id]));
  const rows = [];
  const problems = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    if (!raw.trim()) return;
    const pause = raw.match(PAUSE_LINE);
    if (pause) {
      const ms = Math.round(Number(pause[1]) * (pause[2].toLowerCase() === "s" ? 1000 : 1));
      if (rows.length) rows[rows.length - 1].pause_after_ms = ms;
      return;
    }
    const turn = raw.match(TURN);
    if (!turn) {
      problems.push(`line ${i + 1}: expected "Name: text"`);
      return;
    }
    const id = byName.get(turn[1].toLowerCase());
    if (!id) problems.push(`line ${i + 1}: no voice named "${turn[1]}"`);
    rows.push({ speaker_id: id || "", text: turn[2].trim(), speed: 1, pause_after_ms: null });
  });
  return { rows, problems };
}

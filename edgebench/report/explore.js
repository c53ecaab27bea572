// The report's interactive parts around the Bokeh plots (edgebench/report/explore.py builds the models).
// One shared data source: row i of it is the measurement table's <tr data-i=i>. The target selector shows the
// renderers of one option (a target's points and Pareto front, or every target's points with the front across
// all targets); the legend toggles criteria and precisions through one shared BooleanFilter, and each front is
// redrawn from the rows still shown, so a hidden point is never ringed.
window.ebReport = (() => {
  let models = null;  // {source, shown, layers, plots, fronts}: set by init() once BokehJS has built the document
  const hidden = {group: new Set(), precision: new Set()};
  const details = () => JSON.parse(document.getElementById('eb-details').textContent);
  const esc = s => String(s ?? '').replace(/[&<>"]/g, c => ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;'}[c]));
  const pct = v => v == null ? '—' : (100 * v).toFixed(1) + '%';
  const bar = v => `<span class=bar style="width:${v == null ? 0 : Math.round(100 * v)}px"></span>${pct(v)}`;
  const target = () => document.getElementById('eb-target').value;

  // The Pareto front of the shown rows among a front's candidates (front.tags[0], from explore.py's _front): as
  // report/pareto.py decides it, identical points both kept; sorted along x for the step line.
  function redraw(front, shown) {
    const spec = front.tags[0], data = models.source.data;
    const sign = (v, min) => (min ? v : -v);
    const points = spec.rows.filter(i => shown[i]).map(i => [data[spec.x][i], data[spec.y][i]])
      .map(([x, y]) => [x, y, sign(x, spec.x_min), sign(y, spec.y_min)])
      .sort((p, q) => p[2] - q[2] || p[3] - q[3]);
    const kept = [];
    let best = Infinity, last = null;
    for (const p of points) {
      if (p[3] < best || (last && p[2] === last[2] && p[3] === last[3])) { kept.push(p); best = p[3]; last = p; }
    }
    kept.sort((p, q) => p[0] - q[0] || p[1] - q[1]);
    front.data = {x: kept.map(p => p[0]), y: kept.map(p => p[1])};
  }

  function apply() {
    const data = models.source.data, option = target(), all = option === 'all targets';
    models.shown.booleans = data.group.map((g, i) => !hidden.group.has(g) && !hidden.precision.has(data.precision[i]));
    models.fronts.forEach(f => redraw(f, models.shown.booleans));
    Object.values(models.layers).flat().forEach(r => { r.visible = false; });
    models.layers[option].forEach(r => { r.visible = true; });
    // a plot with no point for this option (an FPGA cost axis for a CPU target) is hidden, not shown empty
    Object.values(models.plots).flat().forEach(p => { p.visible = models.plots[option].includes(p); });
    // an energy axis says whether this option's figures are estimated (explore.py puts the labels in the tags)
    models.plots[option].forEach(p => { [p.below[0].axis_label, p.left[0].axis_label] = p.tags[0][option]; });
    document.querySelectorAll('.eb-missing').forEach(p => { p.hidden = p.dataset.option !== option; });
    document.querySelectorAll('tr[data-i]').forEach(tr => {
      tr.hidden = !all && data.panel[+tr.dataset.i] !== option;
      // the flags of the front the plots show: on the row's target, or across targets
      const cell = tr.querySelector('td.eb-flags');
      if (!cell) return;
      cell.textContent = all && cell.dataset.across !== undefined ? cell.dataset.across : cell.dataset.target;
      tr.classList.toggle('pareto', cell.textContent !== '—');
    });
  }

  function profileHtml(p) {
    if (!p) return '<p class=muted>No per-layer profile recorded for this measurement (set measurement.profile_layers).</p>';
    if (p.status !== 'ok') return `<p>Per-layer profile not available (${esc(p.runtime)}): ${esc(p.reason)}</p>`;
    const rows = p.rows.map(r => `<tr><td class=l>${esc(r[0])}</td><td class=l>${esc(r[1])}</td>` +
      `<td>${r[2] == null ? '—' : r[2].toFixed(4)}</td><td class=l>${bar(r[3])}</td><td class=l>${bar(r[4])}</td></tr>`);
    // the profiling window is not the timed one: the profiler's cost between operators is in its run time
    const window = p.run_ms == null ? '' : `; its own window took ${p.run_ms.toFixed(4)} ms per inference, the ` +
      "profiler's cost included, and the shares are of the layers' summed time";
    return `<h4>Per-layer profile (${esc(p.runtime)}${window})</h4>` +
      '<table class=profile><thead><tr><th class=l>layer</th><th class=l>op</th><th>time ms</th>' +
      `<th class=l>time share</th><th class=l>MACs share</th></tr></thead><tbody>${rows.join('')}</tbody></table>`;
  }

  function detailHtml(d, count) {
    const steps = d.lineage.map(s => `<li><b>${esc(s.label ?? 'unknown')}</b> <code>${esc(s.id ?? '')}</code>: ${esc(s.step)}</li>`);
    const more = count > 1 ? `<p class=muted>${count} measurements selected; this one shown (click a point or row for another).</p>` : '';
    return `${more}<h3>${esc(d.label)} <code>${esc(d.id)}</code> on ${esc(d.context)}</h3>` +
      `<h4>Lineage (this variant first, then what it was made from)</h4><ol class=lineage>${steps.join('')}</ol>` +
      profileHtml(d.profile);
  }

  function select(indices) {
    const chosen = new Set(indices);
    let first = null;
    document.querySelectorAll('tr[data-i]').forEach(tr => {
      const on = chosen.has(+tr.dataset.i);
      tr.classList.toggle('selected', on);
      if (on && first === null) first = tr;
    });
    if (first) first.scrollIntoView({block: 'nearest'});
    const panel = document.getElementById('eb-detail');
    panel.innerHTML = indices.length ? detailHtml(details()[indices[0]], indices.length)
      : '<p class=muted>Nothing selected.</p>';
  }

  function init(m) {
    models = m;
    document.getElementById('eb-target').addEventListener('change', apply);
    document.querySelectorAll('.legend .chip').forEach(chip => chip.addEventListener('click', () => {
      const [kind, value] = chip.dataset.group !== undefined ? ['group', chip.dataset.group] : ['precision', chip.dataset.precision];
      hidden[kind].has(value) ? hidden[kind].delete(value) : hidden[kind].add(value);
      chip.classList.toggle('off', hidden[kind].has(value));
      apply();
    }));
    document.querySelectorAll('tr[data-i]').forEach(tr => tr.addEventListener('click', () => {
      models.source.selected.indices = [+tr.dataset.i];
    }));
    apply();
  }

  return {init, select};
})();

// The baseline page of the browser benchmark: one fetch through the baseline proxy, one
// JSON.parse of the whole body (response.json), then every row rendered in one go. The page
// query names the upstream path (`path`); every other parameter is passed on to it.

const params = new URLSearchParams(location.search);
const path = params.get('path') || '/spend/logs/v2';
params.delete('path');

function cell(text) {
  const td = document.createElement('td');
  td.textContent = text;
  return td;
}

function renderRow(row) {
  const tr = document.createElement('tr');
  tr.dataset.requestId = String(row.request_id);
  const error = (row.metadata && row.metadata.error_information) || {};
  tr.append(
    cell(new Date(row.startTime).toLocaleString()),
    cell(row.model_group || row.model || ''),
    cell(row.status || 'success'),
    cell(String(row.total_tokens ?? '')),
    cell(Number(row.spend || 0).toFixed(6)),
    cell(row.request_duration_ms == null ? '' : `${row.request_duration_ms} ms`),
    cell(error.error_class || ''),
  );
  return tr;
}

async function load() {
  const response = await fetch(`/proxy${path}?${params}`);
  const body = await response.json();
  const rows = Array.isArray(body) ? body : body.data;
  const fragment = document.createDocumentFragment();
  for (const row of rows) {
    fragment.append(renderRow(row));
  }
  document.getElementById('spend-rows').append(fragment);
  document.getElementById('status').textContent = `${rows.length} rows`;
}

load().catch((error) => {
  document.getElementById('status').textContent = `Failed: ${error}`;
});

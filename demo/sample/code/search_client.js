// A tiny browser client for the mmrag REST API.

export async function search(baseUrl, query, { k = 10, modalities = null } = {}) {
  const response = await fetch(`${baseUrl}/search`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ query, k, modalities }),
  });
  if (!response.ok) {
    const problem = await response.json();
    throw new Error(`search failed: ${problem.detail}`);
  }
  return (await response.json()).hits;
}

// Wait until the user stops typing before sending a query.
export function debounce(fn, waitMs = 250) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), waitMs);
  };
}

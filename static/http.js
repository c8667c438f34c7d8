// Reads the error of a failed fetch response for people.

/**
 * Returns the `message` of the server's JSON error shape, or a sentence with the HTTP
 * status when the body is something else, such as a proxy's HTML error page.
 */
export async function readErrorMessage(response) {
  try {
    const body = await response.json();
    if (typeof body?.message === 'string') {
      return body.message;
    }
  } catch {
    // Not JSON: fall through to the status line.
  }
  const status = [response.status, response.statusText].filter(Boolean).join(' ');
  return `The server returned HTTP ${status}.`;
}

// Sign-in form: posts the token to /login in the request body and opens the viewer when the
// server sets the session cookie. The token never goes into a URL.

const form = document.getElementById('login-form');
const input = document.getElementById('token');
const button = document.getElementById('sign-in');
const errorLine = document.getElementById('login-error');

function showError(message) {
  errorLine.textContent = message;
  errorLine.hidden = false;
}

// Return the server's message from the JSON error shape, or a generic one.
async function errorMessage(response) {
  try {
    const body = await response.json();
    if (body && typeof body.message === 'string') {
      return body.message;
    }
  } catch {
    // A body that is not JSON, for example from a proxy in front, has no message to show.
  }
  return `Sign-in failed with HTTP ${response.status}.`;
}

async function signIn(event) {
  event.preventDefault();
  errorLine.hidden = true;
  button.disabled = true;
  try {
    const response = await fetch('/login', {
      method: 'POST',
      body: new URLSearchParams({ token: input.value }),
      credentials: 'same-origin',
      redirect: 'follow',
    });
    if (response.ok) {
      // The redirect to / was followed with the new cookie, so the viewer page loads now.
      window.location.assign('/');
      return;
    }
    let message = await errorMessage(response);
    if (response.status === 401) {
      message = 'Wrong token.';
    }
    showError(message);
    input.select();
  } catch (error) {
    showError(`Cannot reach the server: ${error.message}`);
  } finally {
    button.disabled = false;
  }
}

form.addEventListener('submit', signIn);

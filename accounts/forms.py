"""Portal forms: they parse and check input; the services decide and write."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth import password_validation
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError

from .models import User, login_validator


class LoginForm(AuthenticationForm):
    """Django's login form; an e-mail login is matched case-insensitively.

    Portal users' usernames are their lower-cased e-mail (see `user_signup`).
    """

    def clean(self) -> dict[str, Any]:
        username = self.cleaned_data.get("username")
        if username and "@" in username:
            self.cleaned_data["username"] = username.strip().lower()
        return super().clean()


class SignupForm(forms.Form):
    email = forms.EmailField(
        label="E-mail address",
        max_length=150,
        widget=forms.EmailInput(attrs={"autocomplete": "email", "autofocus": True}),
    )
    password1 = forms.CharField(
        label="Password",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text=password_validation.password_validators_help_text_html(),
    )
    password2 = forms.CharField(
        label="Password again",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        p1, p2 = cleaned.get("password1"), cleaned.get("password2")
        if p1 and p2 and p1 != p2:
            self.add_error("password2", "The two passwords do not match.")
        return cleaned

    def add_service_errors(self, exc: ValidationError) -> None:
        """Show a service's ValidationError on the matching fields of this form."""
        if not hasattr(exc, "error_dict"):
            self.add_error(None, exc)
            return
        field_map = {"password": "password1", "email": "email"}
        for field, errors in exc.error_dict.items():
            self.add_error(field_map.get(field), errors)


class CredentialIssueForm(forms.Form):
    login = forms.CharField(
        label="Proxy login (optional)",
        required=False,
        max_length=64,
        help_text="3-64 characters: lowercase letters, digits, '.', '_' or '-'. "
        "Leave empty to get one generated.",
        widget=forms.TextInput(
            attrs={"autocomplete": "off", "spellcheck": "false", "autocapitalize": "none"}
        ),
    )

    def clean_login(self) -> str:
        login = self.cleaned_data.get("login", "").strip()
        if login:
            login_validator(login)
        return login


class AccountDeleteForm(forms.Form):
    password = forms.CharField(
        label="Your password",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
        help_text="Type your password to confirm. This cannot be undone.",
    )

    def __init__(self, *args: Any, user: User, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.user = user

    def clean_password(self) -> str:
        password = self.cleaned_data["password"]
        if not self.user.check_password(password):
            raise ValidationError("The password is not correct.", code="password_incorrect")
        return password
